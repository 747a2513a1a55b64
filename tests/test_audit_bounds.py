"""The audit log stays bounded whatever a caller claims, and refusals are rate-limited per caller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanroom.audit import (
    MAX_ENTRY_BYTES,
    MAX_ITEMS,
    MAX_TEXT_CHARS,
    AuditLog,
    read_entries,
    summarize,
    verify,
)
from cleanroom.errors import InvalidInput
from party.governance import RateLimitedAudit


def test_an_oversized_claim_is_cut_with_a_marker_naming_its_length(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    claimed = "f" * (4 * 1024 * 1024)  # a "plan hash" of 4 MiB
    log.append("start_job", "refused", plan_hash=claimed, job_id="j" * 5000, detail=f"plan {claimed} refused")
    raw = (tmp_path / "audit.jsonl").read_bytes()
    assert len(raw) <= MAX_ENTRY_BYTES
    entry = read_entries(tmp_path / "audit.jsonl")[0]
    assert entry["plan_hash"] == "f" * MAX_TEXT_CHARS + f"...[truncated, {len(claimed)} chars]"
    assert entry["job_id"].endswith("...[truncated, 5000 chars]")
    assert verify(tmp_path / "audit.jsonl").ok


def test_nested_details_and_clique_lists_are_capped(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(10):
        deep = {"next": deep}
    cliques = [[f"c{i}", "x" * 3000] for i in range(MAX_ITEMS + 50)]
    detail = {"deep": deep, **{f"k{i}": i for i in range(MAX_ITEMS + 10)}}
    log.append("measure", "refused", cliques=cliques, detail=detail)
    raw = (tmp_path / "audit.jsonl").read_bytes()
    assert len(raw) <= MAX_ENTRY_BYTES
    entry = read_entries(tmp_path / "audit.jsonl")[0]
    # each of these alone is over the entry limit, so the largest is replaced by a marker
    assert str(entry["cliques"]).startswith("[omitted: ")
    assert verify(tmp_path / "audit.jsonl").ok
    small = AuditLog(tmp_path / "small.jsonl")
    small.append("measure", "refused", cliques=[["a"]] * (MAX_ITEMS + 5), detail={"deep": deep})
    entry = read_entries(tmp_path / "small.jsonl")[0]
    assert len(entry["cliques"]) == MAX_ITEMS + 1 and entry["cliques"][-1] == "[... 5 more items]"
    assert "[nested too deep]" in json.dumps(entry["detail"])


def test_ordinary_entries_are_unchanged(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    cliques = [["age", "income"], ["sex"]]
    entry = log.append("measure", "answered", cliques=cliques, rho_charged=0.01, detail={"files": ["a"]})
    assert (
        entry["cliques"] == cliques and entry["detail"] == {"files": ["a"]} and entry["rho_charged"] == 0.01
    )
    assert "release_id" not in entry  # charge fields only in charge entries


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refusals_over_the_burst_are_counted_not_logged_then_summarised(tmp_path: Path) -> None:
    clock = Clock()
    audit = RateLimitedAudit(
        AuditLog(tmp_path / "audit.jsonl"), burst=5, refill_s=10, window_s=60, clock=clock
    )
    results = [audit.append("start_job", "refused", requester="coordinator/rogue") for _ in range(40)]
    assert sum(r is not None for r in results) == 5
    assert audit.append("start_job", "refused", requester="coordinator/coordinator") is not None  # own bucket
    assert audit.append("measure", "answered", requester="coordinator/rogue") is not None  # never limited
    clock.now += 25  # two tokens back
    logged = [audit.append("budget", "refused", requester="coordinator/rogue") for _ in range(3)]
    assert [entry is not None for entry in logged] == [True, True, False]
    entries = read_entries(tmp_path / "audit.jsonl")
    assert [e["event"] for e in entries].count("refusals_suppressed") == 0  # window not over yet
    clock.now += 60
    audit.append("measure", "answered", requester="coordinator/coordinator")  # the next append summarises
    entries = read_entries(tmp_path / "audit.jsonl")
    summary = [e for e in entries if e["event"] == "refusals_suppressed"]
    assert len(summary) == 1 and summary[0]["requester"] == "coordinator/rogue"
    assert summary[0]["detail"]["suppressed"] == 36
    assert summary[0]["detail"]["events"] == {"start_job": 35, "budget": 1}
    assert "36 refusals suppressed" in summary[0]["detail"]["message"]
    rogue = [
        e for e in entries if e["requester"] == "coordinator/rogue" and e["event"] != "refusals_suppressed"
    ]
    assert len(rogue) == 5 + 1 + 2
    assert "Refusals: 44 (36 of them not logged one by one" in summarize(tmp_path / "audit.jsonl")
    assert verify(tmp_path / "audit.jsonl").ok


def test_flush_writes_pending_summaries_at_once(tmp_path: Path) -> None:
    audit = RateLimitedAudit(AuditLog(tmp_path / "audit.jsonl"), burst=1, clock=Clock())
    for _ in range(4):
        audit.append("start_job", "refused", requester="x")
    audit.flush()
    audit.flush()  # nothing new: no second summary
    summary = [e for e in read_entries(tmp_path / "audit.jsonl") if e["event"] == "refusals_suppressed"]
    assert [e["detail"]["suppressed"] for e in summary] == [3]
    assert audit.path == (tmp_path / "audit.jsonl").resolve()  # reads pass through to the log


def test_limit_parameters_are_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="burst"):
        RateLimitedAudit(AuditLog(tmp_path / "a.jsonl"), burst=0)
