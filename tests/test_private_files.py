"""Private keys, the ledger, the reveal record and the audit log are created readable by their owner only."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from cleanroom.audit import AuditLog, head_path
from cleanroom.errors import InvalidInput, PermissionDenied
from cleanroom.identity import generate_identity, save_private_key
from cleanroom.ledger import Ledger
from cleanroom.secagg.reveal import ShareKind, SqliteRevealRecord
from party.evaluation import PartyEvaluation
from party.node import ResultWriter
from transport import ca, wire


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask 022: files created without an explicit mode would be world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_ledger_creates_its_directory_0700_and_its_files_0600_including_wal_and_shm(
    tmp_path: Path, umask: None
) -> None:
    path = tmp_path / "state" / "ledger.sqlite"  # state/ does not exist yet
    ledger = Ledger(path, 1.0)
    assert mode(tmp_path / "state") == 0o700
    reader = sqlite3.connect(path)  # an open connection keeps the -wal and -shm files after each write
    try:
        reader.execute("SELECT count(*) FROM releases").fetchall()
        ledger.reserve("r1", 0.1, "plan", "job", {"cliques": ["x" * 10_000]})
        for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
            assert mode(tmp_path / "state" / name) == 0o600, name
    finally:
        reader.close()


def test_an_existing_world_readable_ledger_is_tightened(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path, 1.0)
    os.chmod(path, 0o644)
    Ledger(path, 1.0)
    assert mode(path) == 0o600


def test_reveal_record_files_are_0600(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "state" / "p-reveals.sqlite"
    record = SqliteRevealRecord(path)
    reader = sqlite3.connect(path)
    try:
        reader.execute("SELECT count(*) FROM secagg_reveals").fetchall()
        assert record.claim(b"s" * 32, {"p2": ShareKind.SEED}) == {}
        for name in ("p-reveals.sqlite", "p-reveals.sqlite-wal", "p-reveals.sqlite-shm"):
            assert mode(tmp_path / "state" / name) == 0o600, name
    finally:
        reader.close()


def test_audit_log_and_head_are_0600(tmp_path: Path, umask: None) -> None:
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    log.append("start_job", "answered")
    assert mode(tmp_path / "state") == 0o700
    assert mode(log.path) == 0o600 and mode(head_path(log.path)) == 0o600


def test_private_keys_are_created_0600_not_chmod_ed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = os.umask(0)  # a file created without an explicit mode would be 0666
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)  # fixing the mode later does not count
    try:
        ca.init_ca(tmp_path / "certs")
        files = ca.issue(tmp_path / "certs", "p1")
        reissued = ca.issue(tmp_path / "certs", "p1")  # overwriting an existing key keeps it private
        saved = save_private_key(generate_identity(), tmp_path / "own.ed25519")
    finally:
        os.umask(old)
    for path in (tmp_path / "certs" / "ca.key", files.key, files.identity_key, reissued.key, saved):
        assert mode(path) == 0o600, path
    assert not list((tmp_path / "certs").glob(".*.tmp"))


def _meta(name: str, data: bytes) -> wire.ResultFile:
    return wire.ResultFile(name, len(data), hashlib.sha256(data).hexdigest())


def test_result_writer_hashes_while_writing_without_reading_files_back(tmp_path: Path) -> None:
    chunk = os.urandom(1024 * 1024)
    data_size = 32 * len(chunk)
    digest = hashlib.sha256()
    for _ in range(32):
        digest.update(chunk)
    meta = wire.ResultFile("synthetic.csv", data_size, digest.hexdigest())
    writer = ResultWriter(tmp_path / "out", {"synthetic.csv": meta})
    for i in range(32):
        writer.write("synthetic.csv", i * len(chunk), chunk)
    tracemalloc.start()
    try:
        assert writer.finish() == ["synthetic.csv"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak  # reading the 32 MiB file back would need 32 MiB
    assert (tmp_path / "out" / "synthetic.csv").stat().st_size == data_size
    corrupt = ResultWriter(tmp_path / "bad", {"report.json": _meta("report.json", b"{}")})
    corrupt.write("report.json", 0, b"[]")
    with pytest.raises(InvalidInput, match="corrupted"):
        corrupt.finish()


def test_check_delivery_hashes_staged_files_in_chunks(tmp_path: Path) -> None:
    evaluation = PartyEvaluation("p1", SimpleNamespace(), None, None, tmp_path / "staged", b"")
    staged = evaluation.staged_dir("job") / "synthetic.csv"
    staged.parent.mkdir(parents=True)
    chunk = os.urandom(1024 * 1024)
    with staged.open("wb") as handle:
        for _ in range(32):
            handle.write(chunk)
    meta = wire.ResultFile(
        "synthetic.csv", staged.stat().st_size, hashlib.sha256(staged.read_bytes()).hexdigest()
    )
    tracemalloc.start()
    try:
        evaluation.check_delivery("job", [meta])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak
    with pytest.raises(PermissionDenied, match="differs from the copy staged"):
        evaluation.check_delivery("job", [wire.ResultFile("synthetic.csv", meta.size, "00" * 32)])
