"""Builders for collaboration plans used by the governance tests (and usable by other parts' tests)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cleanroom.identity import public_key_b64
from cleanroom.plan import ABILITIES, schema_file_hash

SCHEMA = {
    "columns": [
        {"name": "age", "type": "numerical", "lower": 17, "upper": 90, "n_bins": 5, "integer": True},
        {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]},
    ]
}


@dataclass
class PlanFiles:
    path: Path
    keys: dict[str, Ed25519PrivateKey]


def member_toml(member_id: str, key: Ed25519PrivateKey | None, abilities: list[str], port: int | None) -> str:
    lines = ["[[members]]", f'id = "{member_id}"']
    if port is not None:
        lines.append(f'address = "127.0.0.1:{port}"')
        lines.append(f'cert_sha256 = "{hashlib.sha256(member_id.encode()).hexdigest()}"')
    if key is not None:
        lines.append(f'identity_key = "{public_key_b64(key)}"')
    lines.append(f"abilities = {json.dumps(abilities)}")
    return "\n".join(lines) + "\n"


def write_plan(
    directory: Path,
    n_parties: int = 3,
    overrides: dict[str, str] | None = None,
    extra_members: str = "",
    name: str = "plan.toml",
) -> PlanFiles:
    """A valid plan: data parties p0..p{n-1} (p0 has every ability, others only run_jobs), an analyst and
    the coordinator (run_jobs).

    `overrides` replaces top-level values by raw TOML text (e.g. {"threshold": "1"}); a value of None-like
    empty string removes the key.
    """
    schema_path = directory / "schema.json"
    schema_path.write_text(json.dumps(SCHEMA), encoding="utf-8")
    top = {
        "collaboration_id": '"test-collab"', "schema": '"schema.json"',
        "schema_hash": f'"{schema_file_hash(schema_path)}"', "target": '"income"',
        "task": '"classification"', "synthesizer": '"mst"', "synthetic_rows": "0", "epsilon": "1.0",
        "delta": "1e-9", "max_epsilon_per_job": "1.0", "min_parties": "2", "dropout_tolerance": "1",
        "colluders": "0", "threshold": "0", "max_membership_inference_score": "0.8",
        "result_formats": '["csv"]', "model_format": '"onnx"', "retention_days": "30",
        "coordinator": '"coordinator"',
    }  # fmt: skip
    top.update(overrides or {})
    text = "".join(f"{k} = {v}\n" for k, v in top.items() if v != "")
    keys = {f"p{i}": Ed25519PrivateKey.generate() for i in range(n_parties)}
    for i, (member_id, key) in enumerate(keys.items()):
        abilities = sorted(ABILITIES) if i == 0 else ["run_jobs"]
        text += "\n" + member_toml(member_id, key, abilities, 50051 + i)
    text += "\n" + member_toml("analyst", None, ["receive_results", "receive_model"], None)
    text += "\n" + member_toml("coordinator", None, ["run_jobs"], None)  # the plan's coordinator
    text += extra_members
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return PlanFiles(path, keys)
