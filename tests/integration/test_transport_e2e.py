"""Real processes over mutual TLS on loopback: 3 party nodes + the coordinator (small data, a few seconds)."""

from __future__ import annotations

import asyncio
import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest

from cleanroom.accounting import cdp_rho
from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom_cli import local
from party.config import PartyConfig
from party.run import total_rho
from transport.ca import init_ca, issue
from transport.channel import secure_channel
from transport.tls import TlsFiles
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc

ROWS_PER_PARTY = 400


def _job(out: Path, **overrides: Any) -> local.LocalJob:
    schema, frame, target, task = demo_dataset(3 * ROWS_PER_PARTY, seed=7)
    parts = {f"party{i + 1}": frame.iloc[i::3].reset_index(drop=True) for i in range(3)}
    settings: dict[str, Any] = {"synthetic_rows": 500, "seed": 3}
    settings.update(overrides)
    return local.LocalJob(out, schema, parts, target, task, 1.0, 1e-9, **settings)


def _spent(job: local.LocalJob, pid: str) -> float:
    config = PartyConfig.load(job.work / f"{pid}.toml")
    return float(Ledger(config.ledger, total_rho(config)).spent())


def _job_folder(party_out: Path) -> Path:
    """Delivered results land flat in the party's output folder, stamped for retention."""
    assert (party_out / ".delivered.json").is_file()
    return party_out


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_three_parties_receive_model_and_data_only_when_entitled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _job(tmp_path / "run", receivers=["party1", "party2"], max_membership_inference_score=1.0)
    assert local.run_local(job) == 0
    for pid in ("party1", "party2"):
        folder = _job_folder(job.out / pid)
        assert _visible(folder) == ["model.onnx", "report.html", "report.json", "synthetic.csv"]
        assert (folder / ".delivered.json").is_file()  # retention counts from this stamp
        synthetic = pd.read_csv(folder / "synthetic.csv")
        assert len(synthetic) == 500
        assert list(synthetic.columns) == [c["name"] for c in job.schema["columns"]]
        report = json.loads((folder / "report.json").read_text())
        assert 0 < report["privacy"]["epsilon"] <= 1.0 + 1e-6
        from cleanroom.evaluation.model_file import load_model

        model = load_model(folder / "model.onnx")  # the receiver's three lines: load, read, predict
        features = synthetic.drop(columns=[job.target]).head(20)
        assert len(model.predict(features)) == 20
        assert _spent(job, pid) > 0
    assert not (job.out / "party3").exists() or not any((job.out / "party3").iterdir())
    assert _spent(job, "party3") > 0  # it contributed, it just receives nothing
    events = [
        json.loads(line) for line in (job.work / "coordinator" / "job-log.jsonl").read_text().splitlines()
    ]
    assert events[-1]["event"] == "job_finished" and events[-1]["outcome"] == "ok"
    assert set(events[-1]["bytes_received"]) == {"party1", "party2", "party3"}


def test_schema_mismatch_at_one_party_stops_the_job_before_any_budget_is_spent(tmp_path: Path) -> None:
    job = _job(tmp_path / "run")
    other = copy.deepcopy(job.schema)
    column = next(c for c in other["columns"] if c.get("type") == "categorical")
    column["categories"] = [*column["categories"], "an-extra-level"]
    job.party_schemas["party2"] = other
    assert local.run_local(job) != 0
    for pid in ("party1", "party2", "party3"):
        assert _spent(job, pid) == 0.0
        assert not (job.out / pid).exists() or not any((job.out / pid).iterdir())


async def _hello(address: str, tls: TlsFiles, target: str, claimed: str) -> None:
    async with secure_channel(address, tls, target) as channel:
        await pb_grpc.PartyServiceStub(channel).Hello(
            pb.HelloRequest(job_id="x", coordinator_id=claimed), timeout=10
        )


def test_real_node_refuses_foreign_ca_and_impersonation(tmp_path: Path) -> None:
    job = _job(tmp_path / "run")
    configs = local.prepare(job)
    procs = local.start_parties(job, configs)
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        address = tomllib.loads(configs["party2"].read_text())["listen"]
        certs = job.work / "certs"
        init_ca(tmp_path / "foreign")
        issue(tmp_path / "foreign", "coordinator", role="coordinator")
        foreign = TlsFiles(
            certs / "ca.pem", tmp_path / "foreign/coordinator.pem", tmp_path / "foreign/coordinator.key"
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            asyncio.run(_hello(address, foreign, "party2", "coordinator"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        party1 = TlsFiles(certs / "ca.pem", certs / "party1.pem", certs / "party1.key")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            asyncio.run(_hello(address, party1, "party2", "coordinator"))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        local.stop(procs)


def test_unreachable_party_stops_the_job_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    job = _job(tmp_path / "run")
    configs = local.prepare(job)
    running = {pid: path for pid, path in configs.items() if pid != "party3"}
    procs = local.start_parties(job, running)
    try:
        asyncio.run(local._wait_all(job, running, procs))
        result = subprocess.run(
            [sys.executable, "-m", "cleanroom_cli.main", "coordinator", "run", "--config",
             str(job.work / "collaboration.toml")],
            capture_output=True, text=True, env=local._env(), cwd=job.work, timeout=300,
        )  # fmt: skip
    finally:
        local.stop(procs)
    assert result.returncode == 3, result.stderr
    assert "party3" in result.stderr and "UNAVAILABLE" in result.stderr
    events = [
        json.loads(line) for line in (job.work / "coordinator" / "job-log.jsonl").read_text().splitlines()
    ]
    assert [e["party"] for e in events if e["event"] == "party_dropped"] == ["party3"]
    assert events[-1]["event"] == "job_finished" and events[-1]["outcome"].startswith("error")
    for pid in ("party1", "party2"):
        assert _spent(job, pid) == 0.0


@pytest.mark.slow
def test_simulate_on_user_csv_files_writes_each_partys_folder(tmp_path: Path) -> None:
    from cleanroom_cli.main import main

    schema, frame, target, _ = demo_dataset(900, seed=11)
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    args = [
        "simulate",
        "--schema",
        str(tmp_path / "schema.json"),
        "--target",
        target,
        "--task",
        "classification",
    ]
    for i, name in enumerate(("airline", "hotel")):
        frame.iloc[i::2].to_csv(tmp_path / f"{name}.csv", index=False)
        args += ["--party", f"{name}={tmp_path / name}.csv"]
    out = tmp_path / "out"
    args += ["--max-membership-inference-score", "1"]  # tiny data: attack scores are mostly noise
    assert main([*args, "--epsilon", "1", "--rows", "300", "--format", "parquet", "--out", str(out)]) == 0
    for name in ("airline", "hotel"):
        folder = _job_folder(out / name)
        assert _visible(folder) == ["model.onnx", "report.html", "report.json", "synthetic.parquet"]
        assert len(pd.read_parquet(folder / "synthetic.parquet")) == 300


@pytest.mark.slow
def test_jobs_under_one_plan_use_fresh_sessions_until_the_plan_budget_is_spent(tmp_path: Path) -> None:
    import subprocess
    import sys

    job = _job(tmp_path / "run", jobs=2)
    configs = local.prepare(job)
    procs = local.start_parties(job, configs)
    command = [sys.executable, "-m", "cleanroom_cli.main", "coordinator", "run", "--config"]
    command.append(str(job.work / "collaboration.toml"))
    runs, records = [], []
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        for _ in range(5):
            runs.append(
                subprocess.run(command, capture_output=True, text=True, env=local._env(), cwd=job.work)
            )
            if runs[-1].returncode != 0:
                break
            records.append(json.loads((job.work / "coordinator" / "job.json").read_text()))
    finally:
        local.stop(procs)
    # rho composes additively: (2 epsilon, delta) holds rho(2 eps) ~ 3.7 rho(eps), i.e. three jobs, not four
    assert [r.returncode for r in runs] == [0, 0, 0, 3], runs[-1].stderr
    assert "nothing was spent" in runs[-1].stderr
    rounds = [[r["round"] for r in record["rounds"]] for record in records]
    per_job = len(rounds[0]) + 3  # each job: the synthesizer's rounds, then 3 evaluation rounds
    assert len(rounds[0]) >= 3
    assert rounds == [list(range(j * per_job, j * per_job + len(rounds[0]))) for j in range(3)]
    plan_rho = cdp_rho(2.0, 1e-9)
    spent = _spent(job, "party1")
    assert spent == pytest.approx(sum(r["rho_spent"] for r in records)) and spent <= plan_rho


@pytest.mark.slow
def test_a_party_killed_mid_job_drops_out_and_the_others_finish(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    job = _job(tmp_path / "run", max_membership_inference_score=1.0)  # tiny data: scores are noise
    configs = local.prepare(job)
    procs = local.start_parties(job, configs)
    command = [sys.executable, "-m", "cleanroom_cli.main", "coordinator", "run", "--config"]
    command.append(str(job.work / "collaboration.toml"))
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        coordinator = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=local._env(), cwd=job.work
        )
        assert coordinator.stdout is not None
        for line in coordinator.stdout:
            if "round_0:" in line:
                procs["party3"].send_signal(signal.SIGKILL)  # after its round-0 release, before round 2
                break
        stderr = coordinator.communicate(timeout=300)[1]
    finally:
        local.stop(procs)
    assert coordinator.returncode == 3, stderr
    assert "could not be delivered to party3" in stderr
    record = json.loads((job.work / "coordinator" / "job.json").read_text())
    assert record["rounds"][0]["survivors"] == ["party1", "party2", "party3"]
    assert record["rounds"][-1]["survivors"] == ["party1", "party2"]
    for pid in ("party1", "party2"):
        assert (job.out / pid / "model.onnx").is_file() and (job.out / pid / "synthetic.csv").is_file()
    assert not (job.out / "party3").exists() or not any((job.out / "party3").iterdir())


@pytest.mark.slow
def test_a_restarted_coordinator_runs_a_new_job_on_fresh_sessions(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    job = _job(tmp_path / "run", jobs=2)
    configs = local.prepare(job)
    procs = local.start_parties(job, configs)
    command = [sys.executable, "-m", "cleanroom_cli.main", "coordinator", "run", "--config"]
    command.append(str(job.work / "collaboration.toml"))
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=local._env(), cwd=job.work)
        assert first.stdout is not None
        for line in first.stdout:
            if "round_0:" in line:
                first.send_signal(signal.SIGKILL)
                break
        first.wait(timeout=60)
        killed_spend = _spent(job, "party1")
        second = subprocess.run(command, capture_output=True, text=True, env=local._env(), cwd=job.work)
    finally:
        local.stop(procs)
    assert first.returncode == -signal.SIGKILL
    assert second.returncode == 0, second.stderr
    record = json.loads((job.work / "coordinator" / "job.json").read_text())
    assert record["rounds"][0]["round"] >= 1  # round 0's session id is never used again
    assert killed_spend > 0  # the killed job's released round stays charged
    assert _spent(job, "party1") == pytest.approx(killed_spend + record["rho_spent"])
