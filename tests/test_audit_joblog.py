"""Coordinator job log: stages with timings, dropped parties, bytes and outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleanroom.errors import PreconditionFailed
from cleanroom.joblog import JobLog, read_job_log, summarize_jobs


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_job_events_and_summary(tmp_path: Path) -> None:
    clock = FakeClock()
    log = JobLog(tmp_path / "jobs.jsonl", clock=clock, wall=lambda: "2026-01-01T00:00:00Z")
    run = log.start("job1", "ab" * 32, ["p0", "p1", "p2"])
    with run.stage("round-1", cliques=3) as extra:
        clock.now += 2.5
        extra["survivors"] = 2
    run.dropped("p2", "round-1", "timeout")
    run.add_bytes("p0", sent=100, received=40)
    run.add_bytes("p0", sent=1, received=2)
    run.add_bytes("p1", sent=50)
    with pytest.raises(RuntimeError), run.stage("fit"):
        clock.now += 1.0
        raise RuntimeError("diverged")
    clock.now += 0.5
    final = run.finish("failed", detail={"stage": "fit"})
    with pytest.raises(PreconditionFailed, match="already finished"):
        run.finish("ok")
    events = read_job_log(tmp_path / "jobs.jsonl", "job1")
    assert [e["event"] for e in events] == ["job_started", "stage", "party_dropped", "stage", "job_finished"]
    assert events[1]["seconds"] == 2.5 and events[1]["survivors"] == 2 and events[1]["cliques"] == 3
    assert events[3]["outcome"] == "error: RuntimeError: diverged" and events[3]["seconds"] == 1.0
    assert final["seconds"] == 4.0 and final["participating"] == ["p0", "p1"]
    assert final["dropped"] == {"p2": "round-1"}
    assert final["bytes_sent"] == {"p0": 101, "p1": 50} and final["bytes_received"] == {"p0": 42, "p1": 0}
    text = summarize_jobs(tmp_path / "jobs.jsonl")
    assert "Job job1" in text and "stage round-1: 2.5 s, ok" in text
    assert "dropped p2 at round-1: timeout" in text
    assert "finished: failed after 4.0 s; participating p0, p1; dropped ['p2']; 151 bytes sent, 42" in text


def test_jobs_are_separated(tmp_path: Path) -> None:
    log = JobLog(tmp_path / "jobs.jsonl")
    log.start("a", "00" * 32, ["p0"]).finish("ok")
    log.start("b", "00" * 32, ["p0"]).finish("ok")
    assert len(read_job_log(tmp_path / "jobs.jsonl", "a")) == 2
    assert len(read_job_log(tmp_path / "jobs.jsonl")) == 4
