"""The durable privacy-budget ledger: charging once, atomic limits, one-shot rounds, concurrency, crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from cleanroom.errors import BudgetExceeded, InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from cleanroom.ledger import BudgetLimit, Ledger, rho_text

REPO = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_reserve_charges_and_reports(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 1.0)
    first = ledger.reserve("r1", 0.25, "planA", "job1", {"cliques": [["age"]]})
    assert first.new and first.rho == 0.25 and first.detail == {"cliques": [["age"]]}
    ledger.reserve("r2", Fraction(1, 3), "planB", "job2")
    assert ledger.spent_exact() == Fraction(1, 4) + Fraction(1, 3)
    assert ledger.remaining() == pytest.approx(1 - 0.25 - 1 / 3)
    assert [e.release_id for e in ledger.entries()] == ["r1", "r2"]
    assert ledger.spent_by_plan() == {"planA": 0.25, "planB": pytest.approx(1 / 3)}
    found = ledger.entry("r1")
    assert found is not None and found.job_id == "job1" and found.detail == {"cliques": [["age"]]}
    assert ledger.entry("r3") is None


def test_a_release_is_charged_once_and_never_again(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 1.0)
    ledger.reserve("r1", 0.3, "p", "j")
    for rho in (0.3, 0.31):  # neither a "retry" nor a new rho re-opens a charged release
        with pytest.raises(PreconditionFailed, match="'r1' was already charged"):
            ledger.reserve("r1", rho, "p", "j2")
    assert ledger.spent() == 0.3 and len(ledger.entries()) == 1


def test_a_round_number_is_used_once_per_plan(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 1.0)
    ledger.reserve("job1/4", 0.1, "plan", "job1", round_number=4)
    with pytest.raises(PreconditionFailed, match="round 4 of plan plan was already opened"):
        ledger.reserve("job2/4", 0.1, "plan", "job2", round_number=4)
    ledger.reserve("other/4", 0.1, "other-plan", "job3", round_number=4)  # another plan: its own rounds
    assert len(ledger.entries()) == 2


def test_limits_are_checked_inside_the_reservation(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 10.0)
    plan_limit = BudgetLimit("this plan", 0.5, "plan")
    job_limit = BudgetLimit("job j1", 0.3, "plan", "j1")
    ledger.reserve("a", 0.2, "plan", "j1", limits=(plan_limit, job_limit))
    with pytest.raises(BudgetExceeded, match="bring job j1 to 0.4, over its limit 0.3"):
        ledger.reserve("b", 0.2, "plan", "j1", limits=(plan_limit, job_limit))
    ledger.reserve("c", 0.25, "plan", "j2", limits=(plan_limit, BudgetLimit("job j2", 0.3, "plan", "j2")))
    with pytest.raises(BudgetExceeded, match="bring this plan to 0.55, over its limit 0.5"):
        ledger.reserve("d", 0.1, "plan", "j3", limits=(plan_limit,))
    ledger.reserve("e", 0.1, "another plan", "j3", limits=(BudgetLimit("that plan", 0.5, "another plan"),))
    assert [e.release_id for e in ledger.entries()] == ["a", "c", "e"]


def test_max_jobs_is_checked_inside_the_reservation(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 10.0)
    ledger.reserve("a", 0.1, "plan", "j1", max_jobs=1)
    ledger.reserve("b", 0.1, "plan", "j1", max_jobs=1)  # the same job goes on
    with pytest.raises(PermissionDenied, match="allows 1 jobs"):
        ledger.reserve("c", 0.1, "plan", "j2", max_jobs=1)


def test_an_old_ledger_is_migrated_and_its_stored_vectors_scrubbed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE releases (seq INTEGER PRIMARY KEY AUTOINCREMENT, release_id TEXT NOT NULL UNIQUE, "
            "rho TEXT NOT NULL, plan_hash TEXT NOT NULL, job_id TEXT NOT NULL, detail TEXT NOT NULL, "
            "reserved_at TEXT NOT NULL, released_at TEXT, payload BLOB)"
        )
        conn.execute(
            "INSERT INTO releases (release_id, rho, plan_hash, job_id, detail, reserved_at, payload) "
            "VALUES ('old/3', '0.1', 'plan', 'old', '{\"round\": 3}', 'then', X'0102')"
        )
    ledger = Ledger(path, 1.0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT payload, round_number FROM releases").fetchone() == (None, 3)
    with pytest.raises(PreconditionFailed, match="round 3"):
        ledger.reserve("new/3", 0.1, "plan", "new", round_number=3)


def test_budget_exceeded_names_everything(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = Ledger(path, 0.5)
    ledger.reserve("r1", 0.4, "p", "j")
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve("r2", 0.2, "p", "j")
    message = str(info.value)
    for part in ("spent 0.4", "requested 0.2", "total 0.5", str(path), "r2"):
        assert part in message
    assert ledger.spent() == 0.4 and len(ledger.entries()) == 1


def test_tolerance_rule(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 1.0)
    ledger.reserve("a", 1.0 + 1e-13, "p", "j")  # float noise in a caller's split: accepted
    other = Ledger(tmp_path / "m.db", 1.0)
    with pytest.raises(BudgetExceeded):
        other.reserve("a", 1.0 + 1e-9, "p", "j")


def test_rho_is_stored_as_exact_text(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 1)
    ledger.reserve("f", Fraction(1, 3), "p", "j")
    ledger.reserve("x", 0.1, "p", "j")
    with sqlite3.connect(tmp_path / "l.db") as conn:
        stored = dict(conn.execute("SELECT release_id, rho FROM releases").fetchall())
    assert stored == {"f": "1/3", "x": "0.1"}
    assert rho_text(Fraction(2, 6)) == "1/3"
    for bad in (float("nan"), float("inf"), "0.1", True):
        with pytest.raises(InvalidInput):
            ledger.reserve("bad", bad, "p", "j")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ledger.reserve("neg", -0.1, "p", "j")


def test_mark_released(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 1.0)
    ledger.reserve("r1", 0.1, "p", "j")
    assert not ledger.entries()[0].released
    ledger.mark_released("r1")
    first = ledger.entries()[0].released_at
    ledger.mark_released("r1")
    assert first is not None and ledger.entries()[0].released_at == first
    with pytest.raises(NotFound, match="unknown"):
        ledger.mark_released("unknown")


def test_reopen_keeps_state_and_total(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    Ledger(path, 1.0).reserve("r1", 0.4, "p", "j")
    reopened = Ledger(path, 1.0)
    assert reopened.spent() == 0.4
    with pytest.raises(PreconditionFailed, match="total rho"):
        Ledger(path, 2.0)


def test_wal_and_full_sync(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 1.0)
    with ledger._connect() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_threads_never_pass_the_total(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", 2.0)
    refused: list[str] = []

    def worker(t: int) -> None:
        mine = ledger if t % 2 else Ledger(tmp_path / "l.db", 2.0)  # shared object and own objects
        for i in range(5):
            try:
                mine.reserve(f"t{t}-{i}", 0.1, "p", f"job{t}")
            except BudgetExceeded:
                refused.append(f"t{t}-{i}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.spent_exact() <= Fraction(2) * (1 + Fraction(1, 10**12))
    assert len(ledger.entries()) == 20 and len(refused) == 20


RACER = textwrap.dedent(
    """
    import os, sys, time
    from cleanroom.errors import BudgetExceeded
    from cleanroom.ledger import Ledger
    path, worker, go = sys.argv[1], sys.argv[2], sys.argv[3]
    while not os.path.exists(go):  # start together so the reservations really race
        time.sleep(0.001)
    ok = 0
    for i in range(10):
        try:
            Ledger(path, 2.5).reserve(f"w{worker}-{i}", 0.1, "plan", f"job{worker}")
            ok += 1
        except BudgetExceeded:
            pass
    print(ok)
    """
)


def test_processes_racing_never_pass_the_total(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    Ledger(path, 2.5)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(path), str(w), str(go)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for w in range(4)
    ]
    go.touch()
    granted = sum(int(proc.communicate(timeout=120)[0]) for proc in procs)
    assert all(proc.returncode == 0 for proc in procs)
    ledger = Ledger(path, 2.5)
    assert granted == len(ledger.entries()) == 25  # 40 requests of 0.1 against 2.5
    assert ledger.spent_exact() == Fraction(25, 10)


CRASHER = textwrap.dedent(
    """
    import sys, time
    from cleanroom.ledger import Ledger
    Ledger(sys.argv[1], 1.0).reserve("r-crash", 0.4, "plan", "job")
    print("reserved", flush=True)
    time.sleep(120)  # killed here: after the charge, before noise is drawn or anything is released
    """
)


def test_budget_stays_spent_after_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(path)], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "reserved"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ledger = Ledger(path, 1.0)
    (entry,) = ledger.entries()
    assert entry.release_id == "r-crash" and not entry.released
    assert ledger.spent() == 0.4
    with pytest.raises(PreconditionFailed):  # the restarted party cannot answer that release again
        ledger.reserve("r-crash", 0.4, "plan", "job")
    assert ledger.spent() == 0.4
    with pytest.raises(BudgetExceeded):
        ledger.reserve("r-new", 0.7, "plan", "job")
