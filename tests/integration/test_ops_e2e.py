"""A party node's own durability and hygiene, with real `cleanroom party serve` processes over mutual TLS.

- oversized claims from any certificate holder keep the audit log small and `audit fetch` working;
- refusals are rate-limited per caller and summarised;
- a deleted ledger, a restored old ledger and a truncated audit log each stop `party serve` (exit 2, one
  line, no traceback); a crash between ledger and audit write is recovered;
- a missing state directory is created (0700) with private files; stale staged evaluation folders go.
"""

from __future__ import annotations

import asyncio
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from cleanroom.audit import MAX_ENTRY_BYTES, AuditLog, head_path, read_entries, verify
from cleanroom.errors import InvalidInput
from cleanroom.ledger import Ledger
from cleanroom.plan import Plan
from cleanroom.sample_data import demo_dataset
from cleanroom.secagg.reveal import SqliteRevealRecord
from cleanroom_cli import local
from party.config import PartyConfig
from party.governance import REFUSAL_BURST
from party.integrity import append_charge
from party.run import build_node, reveals_path, total_rho
from transport import ca, wire
from transport.channel import secure_channel
from transport.tls import TlsFiles
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc

SOFTWARE = "cleanroom/0.1 transport.v1"


@dataclass
class Prepared:
    job: local.LocalJob
    config: PartyConfig
    path: Path  # party1's party.toml
    plan_hash: str


@pytest.fixture
def prepared(tmp_path: Path) -> Prepared:
    schema, frame, target, task = demo_dataset(120, seed=3)
    parts = {f"party{i + 1}": frame.iloc[i::2].reset_index(drop=True) for i in range(2)}
    job = local.LocalJob(tmp_path / "run", schema, parts, target, task, 1.0, 1e-9, 100)
    configs = local.prepare(job)
    ca.issue(job.work / "certs", "rogue", role="coordinator")  # same CA, in no plan
    plan_hash = Plan.load(job.work / "collaboration.toml").hash
    return Prepared(job, PartyConfig.load(configs["party1"]), configs["party1"], plan_hash)


def start(prepared: Prepared) -> subprocess.Popen[bytes]:
    """`cleanroom party serve` for party1 (stdout and stderr to logs/party1.log)."""
    (prepared.job.work / "logs").mkdir(exist_ok=True)
    log = (prepared.job.work / "logs" / "party1.log").open("wb")
    command = [sys.executable, "-m", "cleanroom_cli.main", "party", "serve", "--config", str(prepared.path)]
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=local._env(), cwd=prepared.job.work
    )


def wait_serving(prepared: Prepared, proc: subprocess.Popen[bytes]) -> None:
    """Return once party1 is SERVING; PreconditionFailed (with its log) if it exits first."""
    asyncio.run(local._wait_all(prepared.job, {"party1": prepared.path}, {"party1": proc}))


@pytest.fixture
def serving(prepared: Prepared) -> Iterator[tuple[Prepared, subprocess.Popen[bytes]]]:
    proc = start(prepared)
    try:
        wait_serving(prepared, proc)
        yield prepared, proc
    finally:
        local.stop({"party1": proc})


def tls(prepared: Prepared, identity: str) -> TlsFiles:
    certs = prepared.job.work / "certs"
    return TlsFiles(certs / "ca.pem", certs / f"{identity}.pem", certs / f"{identity}.key")


def call(prepared: Prepared, identity: str, method: str, request: Any) -> grpc.aio.AioRpcError:
    """Make one call to party1 as `identity`; it must fail, and its error is returned."""

    async def run() -> Any:
        async with secure_channel(prepared.config.listen, tls(prepared, identity), "party1") as channel:
            return await getattr(pb_grpc.PartyServiceStub(channel), method)(request, timeout=60)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(run())
    return caught.value


def hello(coordinator_id: str = "coordinator", plan_hash: str = "", job_id: str = "") -> pb.HelloRequest:
    return pb.HelloRequest(job_id=job_id or uuid.uuid4().hex, plan_hash=plan_hash,
                           coordinator_id=coordinator_id,
                           software_version=SOFTWARE)  # fmt: skip


def audit_path(prepared: Prepared) -> Path:
    assert prepared.config.audit_log is not None
    return prepared.config.audit_log


@pytest.mark.adversary
def test_oversized_claims_keep_the_audit_log_bounded_and_fetchable(
    serving: tuple[Prepared, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    prepared, _ = serving
    big = "f" * (3 * 1024 * 1024)  # under the party's receive limit: it arrives, is refused and audited
    refusals = [
        call(prepared, "rogue", "Hello", hello(coordinator_id=big)),  # any certificate holder of the CA
        call(prepared, "coordinator", "Hello", hello(plan_hash=big)),  # the coordinator itself
        call(prepared, "party2", "ReadAuditLog", pb.ReadAuditLogRequest(plan_hash=big)),  # a plan member
    ]
    assert [e.code() for e in refusals] == [grpc.StatusCode.PERMISSION_DENIED] * 3
    huge = "f" * (16 * 1024 * 1024)  # no legitimate request needs a field this big: it never arrives
    assert (
        call(prepared, "rogue", "Hello", hello(coordinator_id=huge)).code()
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    entries = read_entries(audit_path(prepared))
    assert [(e["event"], e["outcome"]) for e in entries] == [
        ("start_job", "refused"), ("start_job", "refused"), ("read_audit_log", "refused"),
    ]  # fmt: skip
    assert audit_path(prepared).stat().st_size < 3 * MAX_ENTRY_BYTES
    assert entries[1]["plan_hash"].endswith(f"...[truncated, {len(big)} chars]")
    assert f"...({len(big)} chars)" in entries[0]["detail"] and len(entries[0]["detail"]) < 400
    copy = tmp_path / "copy.jsonl"
    certs = prepared.job.work / "certs"
    fetch = subprocess.run(
        [sys.executable, "-m", "cleanroom_cli.main", "audit", "fetch", "--address", prepared.config.listen,
         "--ca", str(certs / "ca.pem"), "--cert", str(certs / "party2.pem"),
         "--key", str(certs / "party2.key"),
         "--id", "party1", "--plan", str(prepared.job.work / "collaboration.toml"), "--out", str(copy)],
        capture_output=True, text=True, env=local._env(),
    )  # fmt: skip
    assert fetch.returncode == 0, fetch.stderr
    assert verify(copy).ok and len(read_entries(copy)) == 3


@pytest.mark.adversary
def test_refusals_are_rate_limited_per_caller_and_summarised_at_shutdown(
    serving: tuple[Prepared, subprocess.Popen[bytes]],
) -> None:
    prepared, proc = serving
    extra = 15
    for _ in range(REFUSAL_BURST + extra):
        assert call(prepared, "rogue", "Hello", hello("rogue")).code() == grpc.StatusCode.PERMISSION_DENIED
    call(prepared, "coordinator", "Hello", hello(plan_hash="00" * 32))  # another caller: its own budget
    entries = read_entries(audit_path(prepared))
    assert sum(e["requester"] == "coordinator/rogue" for e in entries) == REFUSAL_BURST
    assert entries[-1]["requester"] == "coordinator" and entries[-1]["outcome"] == "refused"
    local.stop({"party1": proc})  # SIGTERM: the pending summary is written before the node exits
    assert proc.returncode == 0
    summary = read_entries(audit_path(prepared))[-1]
    assert (summary["event"], summary["requester"]) == ("refusals_suppressed", "coordinator/rogue")
    assert summary["detail"]["suppressed"] == extra and summary["detail"]["events"] == {"start_job": extra}
    assert verify(audit_path(prepared)).ok


def _charge(prepared: Prepared, release_id: str, audited: bool = True) -> None:
    """What the node does for one round: reserve in the ledger, then audit the charge."""
    ledger = Ledger(prepared.config.ledger, total_rho(prepared.config))
    reservation = ledger.reserve(release_id, 0.01, prepared.plan_hash, "job1", {"round": 0})
    if audited:
        append_charge(AuditLog(audit_path(prepared)), reservation, "coordinator")


def _used_state(prepared: Prepared) -> Path:
    """Three charged rounds, consistent; returns a backup of the ledger taken after the first."""
    SqliteRevealRecord(reveals_path(prepared.config))
    _charge(prepared, "job1/0")
    backup = prepared.job.work / "ledger-backup.sqlite"
    shutil.copy(prepared.config.ledger, backup)
    _charge(prepared, "job1/1")
    _charge(prepared, "job1/2")
    return backup


def _delete_ledger(prepared: Prepared, backup: Path) -> None:
    prepared.config.ledger.unlink()


def _restore_old_ledger(prepared: Prepared, backup: Path) -> None:
    prepared.config.ledger.unlink()
    shutil.copy(backup, prepared.config.ledger)


def _truncate_audit_log(prepared: Prepared, backup: Path) -> None:
    lines = audit_path(prepared).read_bytes().splitlines(keepends=True)
    audit_path(prepared).write_bytes(b"".join(lines[:-1]))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_delete_ledger, "has 0 charges but audit log {audit} records 3, 3 missing"),
        (_restore_old_ledger, "has 1 charges but audit log {audit} records 3, 2 missing"),
        (_truncate_audit_log, "audit log {audit} fails verification at line 3"),
    ],
)
def test_party_serve_refuses_a_ledger_and_audit_log_that_disagree(
    prepared: Prepared, damage: Any, message: str
) -> None:
    backup = _used_state(prepared)
    damage(prepared, backup)
    proc = start(prepared)
    try:
        with pytest.raises(InvalidInput, match="party party1 refused to start"):
            wait_serving(prepared, proc)
    finally:
        local.stop({"party1": proc})
    output = (prepared.job.work / "logs" / "party1.log").read_text()
    assert output.count("\n") == 1 and "Traceback" not in output, output
    assert output.startswith("cleanroom: error: ") and message.format(audit=audit_path(prepared)) in output
    assert "refusing to serve; see docs/operations.md, 'When the ledger and the audit log disagree'" in output


def test_a_crash_between_ledger_and_audit_write_is_recovered_at_start(prepared: Prepared) -> None:
    _used_state(prepared)
    _charge(prepared, "job1/3", audited=False)
    proc = start(prepared)
    try:
        wait_serving(prepared, proc)
    finally:
        local.stop({"party1": proc})
    charges = [e for e in read_entries(audit_path(prepared)) if e["event"] == "charge"]
    assert [e["release_id"] for e in charges] == ["job1/0", "job1/1", "job1/2", "job1/3"]
    assert "recovered" in charges[-1]["detail"] and verify(audit_path(prepared)).ok


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_party_serve_and_budget_create_a_missing_state_directory(prepared: Prepared) -> None:
    state = prepared.config.ledger.parent
    shutil.rmtree(state)
    budget = subprocess.run(
        [sys.executable, "-m", "cleanroom_cli.main", "party", "budget", "--config", str(prepared.path)],
        capture_output=True, text=True, env=local._env(),
    )  # fmt: skip
    assert budget.returncode == 0 and "spent rho 0" in budget.stdout, budget.stderr
    shutil.rmtree(state)
    proc = start(prepared)
    try:
        wait_serving(prepared, proc)
        call(prepared, "rogue", "Hello", hello("rogue"))  # one audited refusal: the audit log exists
    finally:
        local.stop({"party1": proc})
    assert mode(state) == 0o700
    for path in (prepared.config.ledger, reveals_path(prepared.config), audit_path(prepared),
                 head_path(audit_path(prepared))):  # fmt: skip
        assert mode(path) == 0o600, path


def test_stale_staged_folders_are_deleted_at_start_and_at_a_new_handshake(prepared: Prepared) -> None:
    staging = prepared.config.ledger.parent / "party1-staged"
    for name in ("a" * 32, "b" * 32):
        (staging / name).mkdir(parents=True)
        (staging / name / "model.skops").write_bytes(b"x" * 1000)
    node, _ = build_node(prepared.config)
    assert list(staging.iterdir()) == []  # nothing staged survives a restart
    old, new = node.evaluation.staged_dir("old-job"), node.evaluation.staged_dir("new-job")
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "synthetic.csv").write_text("a\n1\n")
    reply = node.hello(wire.Hello("new-job", node.plan_hash, node.schema_hash, "coordinator", SOFTWARE))
    assert reply.approved
    assert not old.exists() and (new / "synthetic.csv").is_file()
