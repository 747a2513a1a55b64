"""Durable record of which kind of share a party revealed for whom, per session.

The rule that protects every input: within one session a party reveals, for any subject party, either shares
of its self-mask seed (subject survived) or shares of its masking key (subject dropped), never both. The party
claims the kinds here, atomically and durably, before it answers an Unmask request; a conflicting claim is
refused without recording anything. `SqliteRevealRecord` survives restarts (WAL, synchronous=FULL, mode 0600);
`MemoryRevealRecord` is for tests and single-process use.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from cleanroom.private_files import private_file, restrict


class ShareKind(enum.Enum):
    SEED = "seed"  # share of the self-mask seed b_u: revealed for survivors
    KEY = "key"  # share of the masking private key s_u: revealed for dropped parties


class RevealRecord(Protocol):
    def claim(self, sid: bytes, kinds: Mapping[str, ShareKind]) -> dict[str, ShareKind]:
        """Record `kinds` (subject -> kind) for `sid` unless one conflicts with an earlier claim.

        Returns the conflicting subjects with the kind recorded earlier; when it is non-empty nothing new
        was recorded. Re-claiming the same kind is allowed (idempotent retries).
        """
        ...

    def kinds(self, sid: bytes) -> dict[str, ShareKind]:
        """Everything claimed so far for `sid`."""
        ...


class MemoryRevealRecord:
    """In-memory RevealRecord (not durable)."""

    def __init__(self) -> None:
        self._claims: dict[tuple[bytes, str], ShareKind] = {}
        self._lock = threading.Lock()

    def claim(self, sid: bytes, kinds: Mapping[str, ShareKind]) -> dict[str, ShareKind]:
        with self._lock:
            conflicts = {
                subject: self._claims[(sid, subject)]
                for subject, kind in kinds.items()
                if self._claims.get((sid, subject), kind) is not kind
            }
            if not conflicts:
                for subject, kind in kinds.items():
                    self._claims[(sid, subject)] = kind
            return conflicts

    def kinds(self, sid: bytes) -> dict[str, ShareKind]:
        with self._lock:
            return {subject: kind for (s, subject), kind in self._claims.items() if s == sid}


class SqliteRevealRecord:
    """RevealRecord in a SQLite file; each claim is one IMMEDIATE transaction committed before returning."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        private_file(path)  # 0600 before SQLite opens it; its -wal and -shm files inherit the mode
        for suffix in ("-wal", "-shm"):
            restrict(f"{path}{suffix}")
        self._db: sqlite3.Connection | None = None
        with self._lock:
            self._connect().execute(
                "CREATE TABLE IF NOT EXISTS secagg_reveals ("
                " sid BLOB NOT NULL, subject TEXT NOT NULL, kind TEXT NOT NULL,"
                " PRIMARY KEY (sid, subject))"
            )

    def _connect(self) -> sqlite3.Connection:
        """The record's one connection (callers hold the lock); kept open so closing never checkpoints."""
        if self._db is None:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=30.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._db = db
            weakref.finalize(self, db.close)  # deterministic close when the record goes (see Ledger)
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def claim(self, sid: bytes, kinds: Mapping[str, ShareKind]) -> dict[str, ShareKind]:
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute("SELECT subject, kind FROM secagg_reveals WHERE sid = ?", (sid,)).fetchall()
                earlier = {subject: ShareKind(kind) for subject, kind in rows}
                conflicts = {s: earlier[s] for s, k in kinds.items() if earlier.get(s, k) is not k}
                if conflicts:
                    db.execute("ROLLBACK")
                    return conflicts
                db.executemany(
                    "INSERT OR IGNORE INTO secagg_reveals (sid, subject, kind) VALUES (?, ?, ?)",
                    [(sid, subject, kind.value) for subject, kind in kinds.items()],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return {}

    def kinds(self, sid: bytes) -> dict[str, ShareKind]:
        with self._lock:
            rows = (
                self._connect()
                .execute("SELECT subject, kind FROM secagg_reveals WHERE sid = ?", (sid,))
                .fetchall()
            )
        return {subject: ShareKind(kind) for subject, kind in rows}
