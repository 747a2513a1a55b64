"""Deployment folders for the container image: the local pilot and one folder per partner.

Inside every container (see the Dockerfile) a node finds `/config` (its party.toml, or the plan; the plan,
schema.json and the approvals), `/data` (a party's data, read-only), its certificates and identity key as
compose secrets `/run/secrets/{ca.pem,node.pem,node.key,node.ed25519}`, and named volumes `/state`
(ledger, reveal record, audit log), `/results` (delivered files) and, for the coordinator, `/out`.

`prepare_compose` writes what the all-in-one pilot `docker-compose.yml` mounts (`deploy/`):
`schema.json`, `collaboration.toml` (+ approvals; members at `<party>:50051` on the compose network),
`<party>/{party.toml,data/,keys/}`, `coordinator/keys/` and `ca/` (the CA key: never mounted).

`prepare_partners` writes, per node, what one organisation holds to run `compose/party.yml` or
`compose/coordinator.yml` (host networking; each party listens on its own port):
`<party>/{config/{party.toml,collaboration.toml,schema.json},data/,secrets/,party.env}`,
`coordinator/{config/{collaboration.toml,schema.json,<plan>.<party>.sig},secrets/,coordinator.env}` and `ca/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cleanroom.identity import approve, load_private_key
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli.local import ALL_ABILITIES, toml_table
from transport import ca

PARTIES = ("airline", "hotel", "bank")
PORT = 50051
CONTAINER_UID = 10001  # the image's user (Dockerfile): it must be able to read the secrets
SECRETS = "/run/secrets"


@dataclass(frozen=True)
class SampleJob:
    """The plan's job settings for the built-in sample data."""

    rows_per_party: int = 30000
    epsilon: float = 1.0
    delta: float = 1e-9

    def __post_init__(self) -> None:
        if self.rows_per_party < 1:
            raise ValueError(f"rows_per_party ({self.rows_per_party}) must be >= 1")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon ({self.epsilon}) must be > 0")


def container_party_toml(pid: str, listen: str, plan_hash: str, job: SampleJob) -> str:
    """A party.toml for the image's layout (the dataset's lifetime budget: ten jobs of the plan's epsilon)."""
    text = toml_table(
        {
            "party_id": pid,
            "listen": listen,
            "plan": "collaboration.toml",
            "approved_plans": [plan_hash],
            "output_dir": "/results",
        }
    )
    text += "\n[tls]\n" + toml_table(
        {
            "ca": f"{SECRETS}/ca.pem",
            "cert": f"{SECRETS}/node.pem",
            "key": f"{SECRETS}/node.key",
            "identity_key": f"{SECRETS}/node.ed25519",
        }
    )
    text += "\n[data]\n" + toml_table({"schema": "schema.json", "source": f"/data/{pid}.csv"})
    text += "\n[budget]\n" + toml_table(
        {
            "epsilon": 10 * job.epsilon,
            "delta": job.delta,
            "ledger": "/state/ledger.sqlite",
            "audit_log": "/state/audit.jsonl",
        }
    )
    return text


@dataclass(frozen=True)
class SampleData:
    """The built-in sample data split between the parties, with its schema, target and task."""

    schema: dict[str, Any]
    parts: dict[str, pd.DataFrame]
    target: str
    task: str

    @classmethod
    def split(cls, parties: tuple[str, ...], job: SampleJob) -> SampleData:
        schema, frame, target, task = demo_dataset(job.rows_per_party * len(parties), seed=0)
        parts = {pid: frame.iloc[i :: len(parties)] for i, pid in enumerate(parties)}
        return cls(schema, parts, target, task)


def _plan_text(
    collaboration_id: str, schema_hash: str, data: SampleData, job: SampleJob, members: list[Any]
) -> str:
    head = {
        "collaboration_id": collaboration_id,
        "schema": "schema.json",
        "schema_hash": schema_hash,
        "target": data.target,
        "task": data.task,
        "synthesizer": "adaptive",
        "synthetic_rows": job.rows_per_party * len(data.parts),
        "epsilon": job.epsilon,
        "delta": job.delta,
        "min_parties": 2,
        "dropout_tolerance": 1,
        "result_formats": ["csv"],
        "model_format": "onnx",
        "retention_days": 30,
    }
    text = toml_table(head) + "".join("\n[[members]]\n" + toml_table(m) for m in members)
    coordinator = {
        "id": "coordinator",
        "ca": f"{SECRETS}/ca.pem",
        "cert": f"{SECRETS}/node.pem",
        "key": f"{SECRETS}/node.key",
        "out": "/out",
    }
    return text + "\n[coordinator]\n" + toml_table(coordinator)


def _member(files: ca.NodeFiles, pid: str, address: str | None) -> dict[str, Any]:
    """A party (with its address and every ability) or, without an address, the coordinator."""
    entry: dict[str, Any] = {"id": pid}
    if address is not None:
        entry["address"] = address
    entry |= {"cert_sha256": files.cert_sha256, "identity_key": files.identity_public_b64}
    entry["abilities"] = ALL_ABILITIES if address is not None else ["run_jobs"]
    return entry


def _write_plan(
    folder: Path, collaboration_id: str, data: SampleData, job: SampleJob, members: list[Any]
) -> tuple[Path, str]:
    """Write schema.json and the plan into `folder`; returns the plan path and its hash."""
    (folder / "schema.json").write_text(json.dumps(data.schema, indent=2))
    schema_hash = Schema.load(folder / "schema.json").hash()
    plan_path = folder / "collaboration.toml"
    plan_path.write_text(_plan_text(collaboration_id, schema_hash, data, job, members))
    return plan_path, hashlib.sha256(plan_path.read_bytes()).hexdigest()


def _issue(out: Path, node: str, folder: Path) -> ca.NodeFiles:
    """The node's certificate, TLS key and identity key in `folder`, the CA certificate beside them."""
    role = "coordinator" if node == "coordinator" else "party"
    files = ca.issue(out / "ca", node, role=role, out_dir=folder)
    shutil.copyfile(out / "ca" / "ca.pem", folder / "ca.pem")
    return files


def chown_secrets(folder: Path, uid: int = CONTAINER_UID) -> None:
    """Give the image's user the secret files (they stay 0600); needs root."""
    for path in folder.iterdir():
        if path.is_file():
            os.chown(path, uid, uid)


def prepare_compose(
    out: Path, rows_per_party: int = 30000, epsilon: float = 1.0, delta: float = 1e-9
) -> Path:
    """Write everything the all-in-one docker-compose.yml mounts; returns the plan path."""
    if (out / "ca" / "ca.pem").exists():
        raise FileExistsError(f"{out} already holds a collaboration CA; remove it to start over")
    job = SampleJob(rows_per_party, epsilon, delta)
    ca.init_ca(out / "ca")
    data = SampleData.split(PARTIES, job)
    members = []
    for pid, frame in data.parts.items():
        (out / pid / "data").mkdir(parents=True, exist_ok=True)
        members.append(_member(_issue(out, pid, out / pid / "keys"), pid, f"{pid}:{PORT}"))
        frame.to_csv(out / pid / "data" / f"{pid}.csv", index=False)
    members.append(_member(_issue(out, "coordinator", out / "coordinator" / "keys"), "coordinator", None))
    out.mkdir(parents=True, exist_ok=True)
    plan_path, plan_hash = _write_plan(out, "compose-demo", data, job, members)
    for pid in PARTIES:
        approve(plan_path, load_private_key(out / pid / "keys" / f"{pid}.ed25519"), pid)
        party_toml = container_party_toml(pid, f"0.0.0.0:{PORT}", plan_hash, job)
        (out / pid / "party.toml").write_text(party_toml)
    return plan_path


def _env_file(path: Path, values: Mapping[str, str | Path]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def prepare_partners(
    out: Path,
    ports: Mapping[str, int],
    host: str = "127.0.0.1",
    job: SampleJob | None = None,
    image: str = "cleanroom:latest",
    health_interval: str = "30s",
) -> Path:
    """One deployment folder per party (listening on `host:ports[party]`) and one for the coordinator, as
    each organisation would hold them after the steps of docs/operations.md; returns the plan path."""
    out = out.resolve()
    if (out / "ca" / "ca.pem").exists():
        raise FileExistsError(f"{out} already holds a collaboration CA; remove it to start over")
    job = job or SampleJob()
    ca.init_ca(out / "ca")
    data = SampleData.split(tuple(ports), job)
    members = []
    for pid, frame in data.parts.items():
        (out / pid / "data").mkdir(parents=True)
        (out / pid / "config").mkdir()
        members.append(_member(_issue(out, pid, out / pid / "secrets"), pid, f"{host}:{ports[pid]}"))
        frame.to_csv(out / pid / "data" / f"{pid}.csv", index=False)
    coordinator = out / "coordinator"
    members.append(_member(_issue(out, "coordinator", coordinator / "secrets"), "coordinator", None))
    (coordinator / "config").mkdir()
    plan_path, plan_hash = _write_plan(coordinator / "config", "compose-partners", data, job, members)
    for pid in data.parts:
        _party_folder(out / pid, pid, f"{host}:{ports[pid]}", plan_path, plan_hash, job)
        _env_file(out / pid / "party.env", _party_env(out / pid, pid, image, health_interval))
    _env_file(coordinator / "coordinator.env", _coordinator_env(coordinator, image))
    return plan_path


def _party_folder(
    folder: Path, pid: str, listen: str, plan_path: Path, plan_hash: str, job: SampleJob
) -> None:
    """The party approves the plan it received (its signature goes back beside the coordinator's copy)."""
    config = folder / "config"
    shutil.copyfile(plan_path, config / "collaboration.toml")
    shutil.copyfile(plan_path.parent / "schema.json", config / "schema.json")
    signature = approve(
        config / "collaboration.toml", load_private_key(folder / "secrets" / f"{pid}.ed25519"), pid
    )
    shutil.copyfile(signature, plan_path.parent / signature.name)
    (config / "party.toml").write_text(container_party_toml(pid, listen, plan_hash, job))


def _party_env(folder: Path, pid: str, image: str, health_interval: str) -> dict[str, str | Path]:
    secrets = folder / "secrets"
    return {
        **_tls_env(folder, image, pid),
        "CLEANROOM_DATA_DIR": folder / "data",
        "CLEANROOM_IDENTITY_KEY": secrets / f"{pid}.ed25519",
        "CLEANROOM_HEALTH_INTERVAL": health_interval,
    }


def _coordinator_env(folder: Path, image: str) -> dict[str, str | Path]:
    return _tls_env(folder, image, "coordinator")


def _tls_env(folder: Path, image: str, name: str) -> dict[str, str | Path]:
    """What every organisation's compose file needs: the image, its config and its mTLS files."""
    secrets = folder / "secrets"
    return {
        "CLEANROOM_IMAGE": image,
        "CLEANROOM_CONFIG_DIR": folder / "config",
        "CLEANROOM_CA": secrets / "ca.pem",
        "CLEANROOM_TLS_CERT": secrets / f"{name}.pem",
        "CLEANROOM_TLS_KEY": secrets / f"{name}.key",
    }
