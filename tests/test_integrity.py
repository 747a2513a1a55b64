"""The start-up cross-check of ledger, audit log and reveal record, on real files."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from cleanroom.audit import AuditLog, head_path, read_entries, verify
from cleanroom.ledger import Ledger, Reservation, rho_text
from cleanroom.secagg.reveal import SqliteRevealRecord
from party.integrity import StateFiles, StateMismatch, append_charge, check_state
from party.node import PartyNode

TOTAL = 1.0
PLAN = "ab" * 32


def charge(state: StateFiles, release_id: str, rho: float, audited: bool = True) -> Reservation:
    """What the node does for one round: reserve in the ledger, then append the audit "charge" entry."""
    reservation = Ledger(state.ledger, TOTAL).reserve(release_id, rho, PLAN, "job1", {"round": 7})
    if audited:
        assert state.audit_log is not None
        append_charge(AuditLog(state.audit_log), reservation, "coordinator")
    return reservation


@pytest.fixture
def state(tmp_path: Path) -> StateFiles:
    files = StateFiles(
        tmp_path / "state/ledger.sqlite", tmp_path / "state/audit.jsonl", tmp_path / "state/r.sqlite"
    )
    SqliteRevealRecord(files.reveals)
    AuditLog(files.audit_log).append("start_job", "answered", job_id="job1")  # type: ignore[arg-type]
    return files


def test_agreeing_state_passes(state: StateFiles) -> None:
    for i in range(3):
        charge(state, f"job1/{i}", 0.01 * (i + 1))
    assert [e.release_id for e in check_state(state, TOTAL)] == ["job1/0", "job1/1", "job1/2"]


def test_a_fresh_node_without_any_state_passes(tmp_path: Path) -> None:
    files = StateFiles(tmp_path / "l.sqlite", tmp_path / "a.jsonl", tmp_path / "r.sqlite")
    assert check_state(files, TOTAL) == []
    assert not files.ledger.exists()  # the check creates nothing


def test_a_deleted_ledger_is_refused(state: StateFiles) -> None:
    charge(state, "job1/0", 0.1)
    state.ledger.unlink()
    with pytest.raises(
        StateMismatch, match=r"has 0 charges but audit log .* records 1, 1 missing \('job1/0'\)"
    ):
        check_state(state, TOTAL)
    assert not state.ledger.exists()


def test_an_old_ledger_backup_is_refused(state: StateFiles, tmp_path: Path) -> None:
    charge(state, "job1/0", 0.1)
    shutil.copy(state.ledger, tmp_path / "backup.sqlite")
    charge(state, "job1/1", 0.2)
    charge(state, "job1/2", 0.3)
    state.ledger.unlink()
    shutil.copy(tmp_path / "backup.sqlite", state.ledger)
    with pytest.raises(StateMismatch, match="has 1 charges .* records 3, 2 missing .* rolled back"):
        check_state(state, TOTAL)


def test_a_ledger_with_another_rho_is_refused(state: StateFiles) -> None:
    reservation = charge(state, "job1/0", 0.1, audited=False)
    changed = Reservation(**{**reservation.__dict__, "rho_text": rho_text(0.05)})
    assert state.audit_log is not None
    append_charge(AuditLog(state.audit_log), changed, "coordinator")
    with pytest.raises(StateMismatch, match="1 with another rho"):
        check_state(state, TOTAL)


def test_a_truncated_audit_log_is_refused(state: StateFiles) -> None:
    for i in range(3):
        charge(state, f"job1/{i}", 0.1)
    assert state.audit_log is not None
    lines = state.audit_log.read_bytes().splitlines(keepends=True)
    state.audit_log.write_bytes(b"".join(lines[:-2]))
    with pytest.raises(StateMismatch, match="fails verification at line 3: .*tail truncated"):
        check_state(state, TOTAL)
    head_path(state.audit_log).unlink()  # the anchor gone too: the ledger still shows the lost entries
    with pytest.raises(StateMismatch, match="2 charges without an audit entry .*'job1/1', 'job1/2'"):
        check_state(state, TOTAL)


def test_a_missing_audit_log_with_a_used_ledger_is_refused(state: StateFiles) -> None:
    charge(state, "job1/0", 0.1)
    assert state.audit_log is not None
    state.audit_log.unlink()
    with pytest.raises(StateMismatch, match="audit log .* is missing but ledger .* records charges"):
        check_state(state, TOTAL)


def test_a_missing_reveal_record_with_a_used_ledger_is_refused(state: StateFiles) -> None:
    charge(state, "job1/0", 0.1)
    state.reveals.unlink()
    with pytest.raises(StateMismatch, match="reveal record .* is missing"):
        check_state(state, TOTAL)


def test_only_the_last_charge_may_lack_its_audit_entry_and_is_then_recovered(state: StateFiles) -> None:
    charge(state, "job1/0", 0.1)
    charge(state, "job1/1", 0.2, audited=False)  # crash between the ledger commit and the audit append
    check_state(state, TOTAL, "coordinator")
    assert state.audit_log is not None
    last = read_entries(state.audit_log)[-1]
    assert (last["event"], last["outcome"], last["release_id"], last["rho"]) == (
        "charge",
        "reserved",
        "job1/1",
        "0.2",
    )
    assert "recovered" in last["detail"] and last["round"] == 7 and verify(state.audit_log).ok
    check_state(state, TOTAL)  # now they agree: nothing more appended
    assert read_entries(state.audit_log)[-1] == last
    charge(state, "job1/2", 0.1, audited=False)
    charge(state, "job1/3", 0.1, audited=False)
    with pytest.raises(StateMismatch, match="2 charges without an audit entry"):
        check_state(state, TOTAL)


def test_record_charge_writes_the_contract_entry(state: StateFiles, tmp_path: Path) -> None:
    plan = SimpleNamespace(coordinator="coordinator")
    audit = AuditLog(state.audit_log)  # type: ignore[arg-type]
    node = PartyNode("p1", plan, PLAN, (PLAN,), None, "s" * 64, None, None, None, tmp_path, audit=audit)
    reservation = Ledger(state.ledger, TOTAL).reserve("job1/0", 1 / 3, PLAN, "job1", {"round": 4})
    node.record_charge(reservation)
    entry = read_entries(audit.path)[-1]
    keys = ("event", "outcome", "release_id", "rho", "job_id", "round", "plan_hash")
    assert {k: entry[k] for k in keys} == {
        "event": "charge", "outcome": "reserved", "release_id": "job1/0", "rho": rho_text(1 / 3),
        "job_id": "job1", "round": 4, "plan_hash": PLAN,
    }  # fmt: skip
    assert [e.release_id for e in check_state(state, TOTAL)] == ["job1/0"]
