"""Governance refusals against real party processes over mutual TLS (started once for the module).

Each case is driven by a client holding real certificates issued by the collaboration CA: the plan's
coordinator (given `read_audit_log` here), a plan member without `run_jobs` or `read_audit_log`
("analyst"), and a certificate no member holds ("rogue").
Every refusal must carry the right status and reason, leave the party's ledger untouched and be the last
entry of that party's audit log, as `refused`.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import pytest

from cleanroom.audit import read_entries, verify
from cleanroom.ledger import Ledger
from cleanroom.retention import mark_delivered
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli import local
from party.config import PartyConfig
from party.run import total_rho
from tests.round_driver import RoundOutcome, client_call, drive_round
from transport import ca, serde, wire
from transport.channel import secure_channel
from transport.tls import TlsFiles
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc

ROWS_PER_PARTY = 60
SOFTWARE = "cleanroom/0.1 transport.v1"


@dataclass
class Collaboration:
    job: local.LocalJob
    plan_hash: str
    schema_hash: str
    addresses: dict[str, str]


def _add_analyst_and_unapprove(job: local.LocalJob, configs: dict[str, Path]) -> str:
    """Add a member without run_jobs to the plan; party3 keeps approving only some other plan."""
    analyst = ca.issue(job.work / "certs", "analyst", role="coordinator")
    ca.issue(job.work / "certs", "rogue", role="coordinator")  # same CA, in no plan
    plan_path = job.work / "collaboration.toml"
    old_hash = hashlib.sha256(plan_path.read_bytes()).hexdigest()
    text = plan_path.read_text()
    head, coordinator = text.split("\n[coordinator]\n")
    member = (
        f'\n[[members]]\nid = "analyst"\ncert_sha256 = "{analyst.cert_sha256}"\n'
        f'identity_key = "{analyst.identity_public_b64}"\nabilities = ["receive_results"]\n'
    )
    before, found, after = head.rpartition('abilities = ["run_jobs"]')  # the coordinator member's, last
    assert found, head
    head = before + 'abilities = ["run_jobs", "read_audit_log"]' + after
    plan_path.write_text(head + member + "\n[coordinator]\n" + coordinator)
    new_hash = hashlib.sha256(plan_path.read_bytes()).hexdigest()
    for pid, config in configs.items():
        approved = new_hash if pid != "party3" else "00" * 32
        config.write_text(config.read_text().replace(old_hash, approved))
    return new_hash


@pytest.fixture(scope="module")
def collab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collaboration]:
    schema, frame, target, task = demo_dataset(3 * ROWS_PER_PARTY, seed=5)
    parts = {f"party{i + 1}": frame.iloc[i::3].reset_index(drop=True) for i in range(3)}
    out = tmp_path_factory.mktemp("governance")
    job = local.LocalJob(out, schema, parts, target, task, 1.0, 1e-9, 100, receivers=["party1"])
    configs = local.prepare(job)
    plan_hash = _add_analyst_and_unapprove(job, configs)
    schema_hash = Schema.load(job.work / "schema.json").hash()
    addresses = {pid: PartyConfig.load(c).listen for pid, c in configs.items()}
    stale = job.out / "party2"  # results delivered 40 days ago: the node deletes them when it starts
    stale.mkdir(parents=True)
    (stale / "synthetic.csv").write_text("a\n1\n")
    (stale / "notes.txt").write_text("the operator's own file")
    mark_delivered(stale, datetime.now(UTC) - timedelta(days=40), job_id="stale-job")
    procs = local.start_parties(job, configs)
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        yield Collaboration(job, plan_hash, schema_hash, addresses)
    finally:
        local.stop(procs)


def _tls(collab: Collaboration, identity: str) -> TlsFiles:
    certs = collab.job.work / "certs"
    return TlsFiles(certs / "ca.pem", certs / f"{identity}.pem", certs / f"{identity}.key")


def _ledger_state(collab: Collaboration, pid: str) -> tuple[float, int]:
    config = PartyConfig.load(collab.job.work / f"{pid}.toml")
    ledger = Ledger(config.ledger, total_rho(config))
    return float(ledger.spent()), len(ledger.entries())


def _audit(collab: Collaboration, pid: str) -> Path:
    config = PartyConfig.load(collab.job.work / f"{pid}.toml")
    assert config.audit_log is not None
    return config.audit_log


def _hello(collab: Collaboration, identity: str, pid: str, plan_hash: str, job_id: str = "") -> Any:
    message = wire.Hello(job_id or uuid.uuid4().hex, plan_hash, collab.schema_hash, identity, SOFTWARE)

    async def call() -> Any:
        async with secure_channel(collab.addresses[pid], _tls(collab, identity), pid) as channel:
            stub = pb_grpc.PartyServiceStub(channel)
            return await stub.Hello(serde.hello_to_pb(message), timeout=30)

    return asyncio.run(call())


def _deliver(collab: Collaboration, pid: str, job_id: str, name: str, data: bytes) -> Any:
    meta = wire.ResultFile(name, len(data), hashlib.sha256(data).hexdigest())

    async def chunks() -> AsyncIterator[Any]:
        yield serde.result_header_to_pb(job_id, [meta])
        yield serde.chunk_to_pb(name, 0, data)

    async def call() -> Any:
        async with secure_channel(collab.addresses[pid], _tls(collab, "coordinator"), pid) as channel:
            return await pb_grpc.PartyServiceStub(channel).DeliverResults(chunks(), timeout=30)

    return asyncio.run(call())


def _honest_round(collab: Collaboration, job_id: str, parties: list[str], round_number: int) -> RoundOutcome:
    """One secure-aggregation round among `parties` (already handshaken for `job_id`) over mTLS."""
    from cleanroom.plan import Plan
    from coordinator.client import PartyClient

    manifest = Plan.load(collab.job.work / "collaboration.toml").secagg_manifest(collab.schema_hash)
    schema = Schema.load(collab.job.work / "schema.json")
    clique = (schema.domain.attrs[0],)
    spec = wire.RoundRequest(job_id, f"{job_id}/{round_number}", round_number, (clique,), Fraction(10**6))

    async def run() -> RoundOutcome:
        clients = {p: PartyClient(p, collab.addresses[p], _tls(collab, "coordinator"), 30) for p in parties}
        try:
            length = schema.domain.project(clique).size()
            return await drive_round(
                manifest, collab.plan_hash, spec, length, client_call(clients), parties=parties
            )
        finally:
            for client in clients.values():
                await client.close()

    return asyncio.run(run())


def _read_audit(collab: Collaboration, identity: str, pid: str, plan_hash: str) -> Any:
    request = pb.ReadAuditLogRequest(plan_hash=plan_hash)

    async def call() -> Any:
        async with secure_channel(collab.addresses[pid], _tls(collab, identity), pid) as channel:
            return await pb_grpc.PartyServiceStub(channel).ReadAuditLog(request, timeout=30)

    return asyncio.run(call())


def _fetch_cli(collab: Collaboration, identity: str, pid: str, out: Path) -> subprocess.CompletedProcess[str]:
    """`cleanroom audit fetch` as `identity`, in its own process."""
    certs = collab.job.work / "certs"
    command = [
        sys.executable, "-m", "cleanroom_cli.main", "audit", "fetch", "--address", collab.addresses[pid],
        "--ca", str(certs / "ca.pem"), "--cert", str(certs / f"{identity}.pem"),
        "--key", str(certs / f"{identity}.key"), "--id", pid,
        "--plan", str(collab.job.work / "collaboration.toml"), "--out", str(out),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=local._env())


def _refused(collab: Collaboration, pid: str, call: Any, reason: str) -> dict[str, Any]:
    """Run `call`; it must fail PERMISSION_DENIED naming `reason`, change no ledger, and be audited."""
    before = _ledger_state(collab, pid)
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, caught.value.details()
    assert reason in caught.value.details()
    assert _ledger_state(collab, pid) == before
    last = read_entries(_audit(collab, pid))[-1]
    assert last["outcome"] == "refused" and reason in last["detail"], last
    assert verify(_audit(collab, pid)).ok
    return last


def test_a_party_refuses_a_plan_it_has_not_approved(collab: Collaboration) -> None:
    reason = f"plan {collab.plan_hash} is not approved by this party"
    entry = _refused(
        collab, "party3", lambda: _hello(collab, "coordinator", "party3", collab.plan_hash), reason
    )
    assert entry["event"] == "start_job" and entry["requester"] == "coordinator"


def test_a_plan_changed_by_one_byte_needs_new_approvals(collab: Collaboration) -> None:
    plan = (collab.job.work / "collaboration.toml").read_bytes()
    changed = hashlib.sha256(plan + b"\n").hexdigest()  # one trailing newline: another plan
    reason = f"plan {changed} is not approved by this party"
    entry = _refused(collab, "party1", lambda: _hello(collab, "coordinator", "party1", changed), reason)
    assert entry["plan_hash"] == changed


def test_a_coordinator_identity_outside_the_plan_is_refused(collab: Collaboration) -> None:
    reason = f"caller coordinator/rogue is not a member of plan {collab.plan_hash}"
    entry = _refused(collab, "party1", lambda: _hello(collab, "rogue", "party1", collab.plan_hash), reason)
    assert entry["requester"] == "coordinator/rogue" and entry["plan_hash"] == collab.plan_hash


def test_a_member_without_run_jobs_cannot_start_a_job(collab: Collaboration) -> None:
    reason = f"member 'analyst' lacks the run_jobs ability under plan {collab.plan_hash}"
    entry = _refused(collab, "party2", lambda: _hello(collab, "analyst", "party2", collab.plan_hash), reason)
    assert entry["requester"] == "coordinator/analyst"


def test_results_are_not_delivered_to_a_member_without_receive_results(collab: Collaboration) -> None:
    job_id = uuid.uuid4().hex
    assert _hello(collab, "coordinator", "party2", collab.plan_hash, job_id).approved
    reason = "party party2 is not entitled to receive report.json"
    entry = _refused(
        collab, "party2", lambda: _deliver(collab, "party2", job_id, "report.json", b"{}"), reason
    )
    assert entry["event"] == "receive_results" and entry["job_id"] == job_id
    assert not (collab.job.out / "party2" / "report.json").exists()


def test_delivered_results_are_stamped_and_pruned_after_retention_days(collab: Collaboration) -> None:
    job_id = uuid.uuid4().hex
    replies = [_hello(collab, "coordinator", p, collab.plan_hash, job_id) for p in ("party1", "party2")]
    assert all(r.approved for r in replies)
    first = max(r.next_round for r in replies)
    assert _honest_round(collab, job_id, ["party1", "party2"], first).total is not None
    assert list(_deliver(collab, "party1", job_id, "report.json", b"{}").written) == ["report.json"]
    folder = collab.job.out / "party1"
    assert (folder / "report.json").read_bytes() == b"{}" and (folder / ".delivered.json").is_file()
    command = [sys.executable, "-m", "cleanroom_cli.main", "party", "prune", "--config"]
    config = str(collab.job.work / "party1.toml")
    run = subprocess.run([*command, config], capture_output=True, text=True, env=local._env())
    assert run.returncode == 0, run.stderr
    assert (folder / "report.json").is_file()  # delivered just now: kept
    mark_delivered(folder, datetime.now(UTC) - timedelta(days=31), job_id=job_id)  # plan keeps 30 days
    run = subprocess.run([*command, config], capture_output=True, text=True, env=local._env())
    assert run.returncode == 0, run.stderr
    assert not (folder / "report.json").exists()
    last = read_entries(_audit(collab, "party1"))[-1]
    assert (last["event"], last["outcome"], last["job_id"]) == ("retention_delete", "deleted", job_id)
    assert last["detail"]["files"] == ["report.json"] and last["detail"]["retention_days"] == 30
    assert verify(_audit(collab, "party1")).ok


def test_a_party_prunes_outputs_past_retention_when_it_starts(collab: Collaboration) -> None:
    folder = collab.job.out / "party2"
    assert not (folder / "synthetic.csv").exists()
    assert (folder / "notes.txt").is_file()  # only delivered result files are ever deleted
    deletions = [e for e in read_entries(_audit(collab, "party2")) if e["event"] == "retention_delete"]
    assert [(e["job_id"], e["outcome"]) for e in deletions] == [("stale-job", "deleted")]
    detail = deletions[0]["detail"]
    assert detail["files"] == ["synthetic.csv"] and detail["retention_days"] == 30


def test_a_member_with_read_audit_log_fetches_a_copy_that_verifies(
    collab: Collaboration, tmp_path: Path
) -> None:
    before = _ledger_state(collab, "party1")
    copy = tmp_path / "party1.audit.jsonl"
    run = _fetch_cli(collab, "coordinator", "party1", copy)
    assert run.returncode == 0, run.stderr
    assert copy.with_name(copy.name + ".head").is_file()
    verified = subprocess.run(
        [sys.executable, "-m", "cleanroom_cli.main", "audit", "verify", str(copy)],
        capture_output=True, text=True, env=local._env(),
    )  # fmt: skip
    assert verified.returncode == 0 and "matches its head file" in verified.stdout, verified.stdout
    live = _audit(collab, "party1").read_bytes()
    assert live.startswith(copy.read_bytes()) and read_entries(copy)  # the copy is the log as it was
    last = read_entries(_audit(collab, "party1"))[-1]
    assert (last["event"], last["outcome"]) == ("read_audit_log", "answered")
    assert last["requester"] == "coordinator/coordinator" and last["plan_hash"] == collab.plan_hash
    assert last["seq"] == len(read_entries(copy)) + 1
    assert _ledger_state(collab, "party1") == before


def test_a_member_without_read_audit_log_cannot_read_the_audit_log(
    collab: Collaboration, tmp_path: Path
) -> None:
    reason = f"member 'analyst' lacks the read_audit_log ability under plan {collab.plan_hash}"
    entry = _refused(
        collab, "party1", lambda: _read_audit(collab, "analyst", "party1", collab.plan_hash), reason
    )
    assert entry["event"] == "read_audit_log" and entry["requester"] == "coordinator/analyst"
    copy = tmp_path / "copy.jsonl"
    run = _fetch_cli(collab, "analyst", "party1", copy)
    assert run.returncode == 3 and "PERMISSION_DENIED" in run.stderr and reason in run.stderr, run.stderr
    assert not copy.exists()


def test_the_audit_log_is_not_read_under_an_unapproved_plan_or_by_a_non_member(
    collab: Collaboration,
) -> None:
    reason = f"plan {collab.plan_hash} is not approved by this party"
    entry = _refused(
        collab, "party3", lambda: _read_audit(collab, "coordinator", "party3", collab.plan_hash), reason
    )
    assert entry["event"] == "read_audit_log" and entry["requester"] == "coordinator/coordinator"
    reason = f"caller coordinator/rogue is not a member of plan {collab.plan_hash}"
    _refused(collab, "party1", lambda: _read_audit(collab, "rogue", "party1", collab.plan_hash), reason)
