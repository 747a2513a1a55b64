"""Audit log: hash chain, head anchor, tamper detection naming the first bad line, concurrency, summary."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cleanroom.audit import (
    GENESIS_HASH,
    AuditLog,
    entry_hash,
    head_path,
    read_entries,
    summarize,
    verify,
)
from cleanroom.errors import InvalidInput, NotFound, PreconditionFailed

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write_log(path: Path, n: int = 6) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(
            "measure", "answered", job_id=f"job{i % 2}", round=i // 2, requester="coordinator",
            plan_hash="ab" * 32, cliques=[["age", "income"]], noise_scale=3.5, rho_charged=0.01,
            rho_remaining=1.0 - 0.01 * (i + 1), time=T0 + timedelta(minutes=i),
        )  # fmt: skip
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_chain_fields_and_ok(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    entries = read_entries(path)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    for before, after in zip(entries, entries[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    assert all(entry_hash(e) == e["hash"] for e in entries)
    assert entries[2]["time"] == "2026-01-01T00:02:00.000000Z"
    assert entries[0]["cliques"] == [["age", "income"]]
    result = verify(path)
    assert result.ok and result.anchored and result.entries == 6 and result.first_bad_line is None
    assert json.loads(head_path(path).read_text()) == {"seq": 6, "hash": entries[-1]["hash"]}


def test_edited_line_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    content = lines(path)
    content[3] = content[3].replace(b'"rho_charged":0.01', b'"rho_charged":0.001')
    path.write_bytes(b"".join(content))
    result = verify(path)
    assert not result.ok and result.first_bad_line == 4 and "edited" in result.problem
    assert "line 4" in result.describe()


def test_edit_with_recomputed_hash_breaks_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    content = lines(path)
    entry = json.loads(content[1])
    entry["outcome"] = "refused"
    entry["hash"] = entry_hash(entry)
    content[1] = json.dumps(entry).encode() + b"\n"
    path.write_bytes(b"".join(content))
    result = verify(path)
    assert not result.ok and result.first_bad_line == 3 and "prev_hash" in result.problem


@pytest.mark.parametrize(("index", "bad_line"), [(0, 1), (2, 3), (4, 5)])
def test_deleted_line_named(tmp_path: Path, index: int, bad_line: int) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    content = lines(path)
    del content[index]
    path.write_bytes(b"".join(content))
    result = verify(path)
    assert not result.ok and result.first_bad_line == bad_line and "deleted" in result.problem


def test_reordered_lines_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    content = lines(path)
    content[2], content[3] = content[3], content[2]
    path.write_bytes(b"".join(content))
    result = verify(path)
    assert not result.ok and result.first_bad_line == 3 and "seq 4 where 3 was expected" in result.problem


def test_truncated_tail_detected_only_with_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    path.write_bytes(b"".join(lines(path)[:4]))
    result = verify(path)
    assert not result.ok and result.first_bad_line == 5 and "tail truncated" in result.problem
    head_path(path).unlink()
    unanchored = verify(path)
    assert unanchored.ok and not unanchored.anchored and unanchored.entries == 4
    assert "undetectable" in unanchored.describe()
    assert not verify(path, require_head=True).ok


def test_rewritten_log_mismatching_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, n=3)
    saved_head = head_path(path).read_bytes()
    path.unlink()
    head_path(path).unlink()
    AuditLog(path).append("measure", "refused", time=T0)  # a fresh, valid chain with different content
    write_log(path, n=3)
    head_path(path).write_bytes(saved_head)
    result = verify(path)
    assert not result.ok and result.first_bad_line == 3 and "log rewritten" in result.problem


def test_partial_last_line_blocks_append(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write_log(path, n=2)
    path.write_bytes(path.read_bytes()[:-10])
    result = verify(path)
    assert not result.ok and result.first_bad_line == 2 and "incomplete" in result.problem
    with pytest.raises(PreconditionFailed, match="incomplete line"):
        log.append("measure", "answered")


def test_head_lag_tolerated_with_note(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, n=3)
    first_two = read_entries(path)[1]
    head_path(path).write_text(json.dumps({"seq": 2, "hash": first_two["hash"]}))
    result = verify(path)
    assert result.ok and "lags by 1" in result.note


def test_missing_log_and_naive_time(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        verify(tmp_path / "none.jsonl")
    with pytest.raises(InvalidInput, match="timezone-aware"):
        AuditLog(tmp_path / "a.jsonl").append("x", "answered", time=datetime(2026, 1, 1))


def test_threads_append_safely(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    def work(worker: int) -> None:
        log = AuditLog(path)  # separate instances share the per-file lock
        for i in range(15):
            log.append("measure", "answered", job_id=f"w{worker}", round=i)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = verify(path)
    assert result.ok and result.entries == 60


def _process_work(path: str, worker: int) -> None:
    log = AuditLog(path)
    for i in range(10):
        log.append("measure", "answered", job_id=f"p{worker}", round=i)


def test_processes_append_safely(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_process_work, args=(str(path), w)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(w.exitcode == 0 for w in workers)
    result = verify(path)
    assert result.ok and result.entries == 20


def test_summary_shows_budget_per_job_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write_log(path, n=4)
    log.append("measure", "refused", job_id="job9", requester="mallory", detail="not the coordinator")
    log.append("retention_delete", "deleted", job_id="job0", detail={"path": "outputs/job0"})
    text = summarize(path)
    assert "OK, 6 entries" in text
    assert "Job job0 (plan abababababab): 2 answered, 0 refused, rho charged 0.02" in text
    assert "Job job1" in text and "Job job9" in text
    job0 = text.split("Job job0")[1].split("Job ")[0]
    assert "0.02" in job0.splitlines()[-2]  # cumulative after the second round
    assert "Refusals: 1" in text and "mallory: not the coordinator" in text
    assert "Deletions: 1" in text and "outputs/job0" in text


def test_summary_of_broken_log_says_so(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, n=3)
    content = lines(path)
    path.write_bytes(content[0] + content[2])
    assert "BROKEN at line 2" in summarize(path)
