"""Retention: only results delivered more than retention_days ago are deleted, each deletion audited."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cleanroom.audit import AuditLog, read_entries, verify
from cleanroom.errors import InvalidInput
from cleanroom.retention import STAMP_NAME, delivery_of, mark_delivered, prune

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NAMES = ("synthetic.csv", "model.onnx", "report.json")


def make_output(root: Path, name: str, delivered: datetime | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "synthetic.csv").write_text("a,b\n1,2\n")
    (folder / "report.json").write_text("{}")
    (folder / "notes.txt").write_text("the operator's own file")
    if delivered is not None:
        mark_delivered(folder, delivered, job_id="job-1", plan_hash="cd" * 32)
    return folder


def test_prune_removes_only_old_results_and_audits(tmp_path: Path) -> None:
    old = make_output(tmp_path, "old", NOW - timedelta(days=31))
    fresh = make_output(tmp_path, "fresh", NOW - timedelta(days=29))
    edge = make_output(tmp_path, "edge", NOW - timedelta(days=30))
    log = AuditLog(tmp_path / "audit.jsonl")
    assert prune(fresh, 30, NOW, log, NAMES) == [] and prune(edge, 30, NOW, log, NAMES) == []
    assert prune(old, 30, NOW, log, NAMES) == [old / "synthetic.csv", old / "report.json"]
    assert sorted(p.name for p in old.iterdir()) == ["notes.txt"]  # stamp and results gone, own file kept
    assert (fresh / "synthetic.csv").exists() and (edge / "synthetic.csv").exists()
    entries = read_entries(tmp_path / "audit.jsonl")
    assert len(entries) == 1
    entry = entries[0]
    assert entry["event"] == "retention_delete" and entry["outcome"] == "deleted"
    assert entry["job_id"] == "job-1" and entry["plan_hash"] == "cd" * 32
    assert entry["detail"]["basis"] == "stamp"
    assert entry["detail"]["files"] == ["synthetic.csv", "report.json"]
    assert verify(tmp_path / "audit.jsonl").ok


def test_stamp_beats_mtime(tmp_path: Path) -> None:
    recent = make_output(tmp_path, "touched-long-ago", NOW - timedelta(days=1))
    old_time = (NOW - timedelta(days=400)).timestamp()
    os.utime(recent / STAMP_NAME, (old_time, old_time))
    assert prune(recent, 30, NOW, None, NAMES) == []
    stale = make_output(tmp_path, "just-copied", NOW - timedelta(days=90))
    assert prune(stale, 30, NOW, None, NAMES) == [stale / "synthetic.csv", stale / "report.json"]


def test_unstamped_folders_are_never_touched(tmp_path: Path) -> None:
    unstamped = make_output(tmp_path, "unstamped", None)
    old_time = (NOW - timedelta(days=400)).timestamp()
    os.utime(unstamped, (old_time, old_time))
    assert prune(unstamped, 30, NOW, None, NAMES) == []
    assert (unstamped / "synthetic.csv").exists()


def test_unreadable_stamp_falls_back_to_the_folder_time(tmp_path: Path) -> None:
    folder = make_output(tmp_path, "garbled", None)
    (folder / STAMP_NAME).write_text("not json")
    assert delivery_of(folder).basis == "mtime"


def test_missing_dir_and_bad_arguments(tmp_path: Path) -> None:
    assert prune(tmp_path / "none", 30, NOW, None, NAMES) == []
    with pytest.raises(InvalidInput, match="timezone-aware"):
        prune(tmp_path, 30, datetime(2026, 1, 1), None, NAMES)
    with pytest.raises(InvalidInput, match=r"retention_days \(-1\) must be >= 0"):
        prune(tmp_path, -1, NOW, None, NAMES)
