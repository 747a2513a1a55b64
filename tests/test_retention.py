"""Retention: only outputs delivered more than retention_days ago are deleted, each deletion audited."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cleanroom.audit import AuditLog, read_entries, verify
from cleanroom.errors import InvalidInput
from cleanroom.retention import STAMP_NAME, delivery_of, mark_delivered, prune

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_output(root: Path, name: str, delivered: datetime | None) -> Path:
    job_dir = root / name
    job_dir.mkdir(parents=True)
    (job_dir / "synthetic.csv").write_text("a,b\n1,2\n")
    if delivered is not None:
        mark_delivered(job_dir, delivered, plan_hash="cd" * 32)
    return job_dir


def test_prune_removes_only_old_outputs_and_audits(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    old = make_output(outputs, "job-old", NOW - timedelta(days=31))
    fresh = make_output(outputs, "job-fresh", NOW - timedelta(days=29))
    edge = make_output(outputs, "job-edge", NOW - timedelta(days=30))
    log = AuditLog(tmp_path / "audit.jsonl")
    removed = prune(outputs, 30, NOW, log)
    assert removed == [old]
    assert not old.exists() and fresh.exists() and edge.exists()
    entries = read_entries(tmp_path / "audit.jsonl")
    assert len(entries) == 1
    entry = entries[0]
    assert entry["event"] == "retention_delete" and entry["outcome"] == "deleted"
    assert entry["job_id"] == "job-old" and entry["plan_hash"] == "cd" * 32
    assert entry["detail"]["basis"] == "stamp" and entry["detail"]["age_days"] == 31.0
    assert verify(tmp_path / "audit.jsonl").ok


def test_stamp_beats_mtime(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    recent = make_output(outputs, "job-touched-long-ago", NOW - timedelta(days=1))
    old_time = (NOW - timedelta(days=400)).timestamp()
    os.utime(recent, (old_time, old_time))
    assert prune(outputs, 30, NOW, None) == []
    stale = make_output(outputs, "job-just-copied", NOW - timedelta(days=90))
    assert prune(outputs, 30, NOW, None) == [stale]  # its mtime is "now", the stamp says 90 days


def test_unstamped_folders_fall_back_to_mtime(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    abandoned = make_output(outputs, "partial-old", None)
    in_progress = make_output(outputs, "partial-new", None)
    old_time = (NOW - timedelta(days=60)).timestamp()
    os.utime(abandoned, (old_time, old_time))
    os.utime(in_progress, (NOW.timestamp(), NOW.timestamp()))
    (in_progress / STAMP_NAME).write_text("not json")
    log = AuditLog(tmp_path / "audit.jsonl")
    assert prune(outputs, 30, NOW, log) == [abandoned]
    assert read_entries(tmp_path / "audit.jsonl")[0]["detail"]["basis"] == "mtime"
    assert delivery_of(in_progress).basis == "mtime"


def test_symlinks_files_and_hidden_entries_untouched(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    elsewhere = make_output(tmp_path, "precious", NOW - timedelta(days=365))
    outputs.mkdir()
    (outputs / "link").symlink_to(elsewhere, target_is_directory=True)
    (outputs / "notes.txt").write_text("x")
    make_output(outputs, ".staging", NOW - timedelta(days=365))
    assert prune(outputs, 30, NOW, None) == []
    assert elsewhere.exists() and (outputs / ".staging").exists()


def test_missing_dir_and_bad_arguments(tmp_path: Path) -> None:
    assert prune(tmp_path / "none", 30, NOW, None) == []
    with pytest.raises(InvalidInput, match="timezone-aware"):
        prune(tmp_path, 30, datetime(2026, 1, 1), None)
    with pytest.raises(InvalidInput, match=r"retention_days \(-1\) must be >= 0"):
        prune(tmp_path, -1, NOW, None)
