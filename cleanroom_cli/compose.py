"""Prepare `deploy/` for docker-compose.yml: sample data, CA, certificates, plan and one party.toml per party.

Layout (host side; docker-compose.yml mounts each party's folders into its container only):
`deploy/schema.json`, `deploy/collaboration.toml` (members at `<party>:50051`, `[coordinator]` table),
`deploy/<party>/{party.toml,data/,keys/,state/,results/}`, `deploy/coordinator/{keys/,out/}` and
`deploy/ca/` (the CA key: keep it off every node; it is not mounted anywhere).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from cleanroom.identity import approve, load_private_key
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli.local import ALL_ABILITIES, toml_table
from transport import ca

PARTIES = ("airline", "hotel", "bank")
PORT = 50051


def _party_files(out: Path, pid: str) -> dict[str, str]:
    folder = out / pid
    for sub in ("data", "keys", "state", "results"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    files = ca.issue(out / "ca", pid, role="party", out_dir=folder / "keys")
    shutil.copyfile(out / "ca" / "ca.pem", folder / "keys" / "ca.pem")
    return {
        "id": pid,
        "address": f"{pid}:{PORT}",
        "cert_sha256": files.cert_sha256,
        "identity_key": files.identity_public_b64,
    }


def _party_toml(pid: str, plan_hash: str, epsilon: float, delta: float) -> str:
    text = toml_table(
        {
            "party_id": pid,
            "listen": f"0.0.0.0:{PORT}",
            "plan": "collaboration.toml",
            "approved_plans": [plan_hash],
            "output_dir": "/results",
        }
    )
    text += "\n[tls]\n" + toml_table(
        {
            "ca": "/keys/ca.pem",
            "cert": f"/keys/{pid}.pem",
            "key": f"/keys/{pid}.key",
            "identity_key": f"/keys/{pid}.ed25519",
        }
    )
    text += "\n[data]\n" + toml_table({"schema": "schema.json", "source": f"/data/{pid}.csv"})
    text += "\n[budget]\n" + toml_table(
        {
            "epsilon": 10 * epsilon,
            "delta": delta,
            "ledger": "/state/ledger.sqlite",
            "audit_log": "/state/audit.jsonl",
        }
    )
    return text


def prepare_compose(
    out: Path, rows_per_party: int = 30000, epsilon: float = 1.0, delta: float = 1e-9
) -> Path:
    """Write everything docker-compose.yml mounts; returns the plan path."""
    if (out / "ca" / "ca.pem").exists():
        raise FileExistsError(f"{out} already holds a collaboration CA; remove it to start over")
    ca.init_ca(out / "ca")
    schema, frame, target, task = demo_dataset(rows_per_party * len(PARTIES), seed=0)
    (out / "schema.json").write_text(json.dumps(schema, indent=2))
    members = []
    for i, pid in enumerate(PARTIES):
        members.append({**_party_files(out, pid), "abilities": ALL_ABILITIES})
        frame.iloc[i :: len(PARTIES)].to_csv(out / pid / "data" / f"{pid}.csv", index=False)
    (out / "coordinator" / "keys").mkdir(parents=True, exist_ok=True)
    (out / "coordinator" / "out").mkdir(exist_ok=True)
    coord = ca.issue(out / "ca", "coordinator", role="coordinator", out_dir=out / "coordinator" / "keys")
    shutil.copyfile(out / "ca" / "ca.pem", out / "coordinator" / "keys" / "ca.pem")
    members.append(
        {
            "id": "coordinator",
            "cert_sha256": coord.cert_sha256,
            "identity_key": coord.identity_public_b64,
            "abilities": ["run_jobs"],
        }
    )
    schema_hash = Schema.load(out / "schema.json").hash()
    head = {
        "collaboration_id": "compose-demo",
        "schema": "schema.json",
        "schema_hash": schema_hash,
        "target": target,
        "task": task,
        "synthesizer": "adaptive",
        "synthetic_rows": rows_per_party * len(PARTIES),
        "epsilon": epsilon,
        "delta": delta,
        "min_parties": 2,
        "dropout_tolerance": 1,
        "result_formats": ["csv"],
        "model_format": "skops",
        "retention_days": 30,
    }
    text = toml_table(head) + "".join("\n[[members]]\n" + toml_table(m) for m in members)
    text += "\n[coordinator]\n" + toml_table(
        {
            "id": "coordinator",
            "ca": "certs/ca.pem",
            "cert": "certs/coordinator.pem",
            "key": "certs/coordinator.key",
            "out": "coordinator",
        }
    )
    plan_path = out / "collaboration.toml"
    plan_path.write_text(text)
    plan_hash = hashlib.sha256(plan_path.read_bytes()).hexdigest()
    for pid in PARTIES:
        approve(plan_path, load_private_key(out / pid / "keys" / f"{pid}.ed25519"), pid)
    for pid in PARTIES:
        (out / pid / "party.toml").write_text(_party_toml(pid, plan_hash, epsilon, delta))
    return plan_path
