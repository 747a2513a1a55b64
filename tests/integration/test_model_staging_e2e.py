"""A coordinator stages models at real party processes (mTLS on loopback): code is refused, nothing runs.

The coordinator here is scripted: it shakes hands as usual, then uploads with `StageEvaluation` (1) the
reviewer's skops pipeline whose FunctionTransformer runs a Python script, named `model.onnx`, and (2) an ONNX
graph naming an operator of a custom domain. Each party refuses each upload, audits the refusal, keeps
nothing staged, charges nothing, and the script never runs. (3) The model the coordinator really trains is
accepted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import onnx
import pandas as pd
import pytest
from onnx import helper

from cleanroom.audit import read_entries
from cleanroom.errors import CleanroomError, PermissionDenied
from cleanroom.evaluation import model_export
from cleanroom.evaluation.model_file import MODEL_FILE_NAME
from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli import local
from coordinator.config import CoordinatorConfig
from coordinator.results import train_model
from coordinator.workflow import SOFTWARE_VERSION, Workflow
from party.config import PartyConfig
from party.run import total_rho
from transport import wire

PARTIES = ("party1", "party2")

pytestmark = pytest.mark.adversary  # the malicious-coordinator suite: `pytest -m adversary`


def _genuine_model(schema: dict[str, Any], frame: pd.DataFrame, target: str, task: str, path: Path) -> bytes:
    estimator, spec, x = train_model(frame, target, task, Schema.from_dict(schema), seed=0)
    data = model_export.export_model(estimator, spec, x[:1000])
    path.write_bytes(data)
    return data


async def _stage_all(job: local.LocalJob, files: dict[str, Path]) -> dict[str, Any]:
    """Handshake, then StageEvaluation of `files` at every party; party -> written names or the error."""
    workflow = Workflow(CoordinatorConfig.load(job.work / "collaboration.toml"))
    config = workflow.config
    job_id = workflow.record.job_id
    schema_hash = config.schema.hash()
    hello = wire.Hello(job_id, config.plan_hash, schema_hash, config.coordinator_id, SOFTWARE_VERSION)
    outcomes: dict[str, Any] = {}
    try:
        for pid, client in workflow.clients.items():
            await client.hello(hello)
            try:
                outcomes[pid] = await client.stage_for_evaluation(job_id, files)
            except CleanroomError as error:
                outcomes[pid] = error
    finally:
        for client in workflow.clients.values():
            await client.close()
    return outcomes


def _party_state(job: local.LocalJob, pid: str) -> tuple[float, list[dict[str, Any]]]:
    config = PartyConfig.load(job.work / f"{pid}.toml")
    assert config.audit_log is not None
    return float(Ledger(config.ledger, total_rho(config)).spent()), read_entries(config.audit_log)


def test_parties_refuse_models_carrying_code_and_accept_the_real_one(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from tests.test_model_file import _attack_pipeline

    schema, frame, target, task = demo_dataset(1200, seed=7)
    parts = {pid: frame.iloc[i::2].reset_index(drop=True) for i, pid in enumerate(PARTIES)}
    job = local.LocalJob(tmp_path / "run", schema, parts, target, task, 1.0, 1e-9, 200)
    configs = local.prepare(job)
    marker = tmp_path / "code-ran"
    files = tmp_path / "upload"
    files.mkdir()
    synthetic = files / "synthetic.csv"
    frame.head(50).to_csv(synthetic, index=False)
    attack = files / "attack" / MODEL_FILE_NAME
    attack.parent.mkdir()
    attack.write_bytes(sio.dumps(_attack_pipeline(marker)))
    genuine = files / "genuine" / MODEL_FILE_NAME
    genuine.parent.mkdir()
    custom = files / "custom" / MODEL_FILE_NAME
    custom.parent.mkdir()
    proto = onnx.load_from_string(_genuine_model(schema, frame, target, task, genuine))
    proto.opset_import.append(helper.make_opsetid("com.example.evil", 1))
    proto.graph.node.insert(0, helper.make_node("Exec", ["features"], ["out"], domain="com.example.evil"))
    custom.write_bytes(proto.SerializeToString())
    procs = local.start_parties(job, configs)
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        refused = {
            name: asyncio.run(_stage_all(job, {MODEL_FILE_NAME: path, "synthetic.csv": synthetic}))
            for name, path in (("attack", attack), ("custom", custom))
        }
        accepted = asyncio.run(_stage_all(job, {MODEL_FILE_NAME: genuine, "synthetic.csv": synthetic}))
    finally:
        local.stop(procs)
    for pid in PARTIES:
        assert isinstance(refused["attack"][pid], PermissionDenied), refused
        assert "not an ONNX model" in str(refused["attack"][pid])
        assert isinstance(refused["custom"][pid], PermissionDenied)
        assert "operator sets" in str(refused["custom"][pid])
        assert sorted(accepted[pid]) == [MODEL_FILE_NAME, "synthetic.csv"]
        spent, entries = _party_state(job, pid)
        assert spent == 0.0
        staging = [e for e in entries if e["event"] == "stage_evaluation"]
        assert [e["outcome"] for e in staging] == ["answered", "refused"] * 2 + ["answered"]
    assert not marker.exists()
    staged = sorted(p.parent.name for p in (job.work / "state").glob(f"*-staged/*/{MODEL_FILE_NAME}"))
    assert len(staged) == len(PARTIES)  # only the genuine model, one per party
