"""Durable privacy-budget ledger of one party's dataset (SQLite, WAL, synchronous=FULL, files mode 0600).

A party charges a release here *before* it takes part in the release's secure-aggregation session:
`reserve` commits the charge in an IMMEDIATE transaction (the write lock is taken before the budget is read,
so concurrent threads or processes cannot both see the same remaining budget). Inside that one transaction
it checks the dataset's total and every `BudgetLimit` the caller passes (the plan's total, the job's
limit) and, through a unique index, that the plan's round number was never used before: a round is opened
once, ever. A release id is charged once; reserving it again is refused (a release belongs to exactly one
session, so there is nothing to retry). Reserved budget counts as spent forever, whether or not the release
was ever sent: a crash loses budget, never privacy. Noised vectors are never stored.

rho values are stored as exact text (`repr` of a float, `str` of a Fraction such as "1/3", or an int) and
summed as Fractions. Tolerance rule: callers compute rho in floating point (splits, sqrt, exp), so two
values meant to be equal can differ in the last bits. A reservation fits if spent + requested <= total *
(1 + 1e-12). The slack is far below any meaningful privacy difference and far above float64 rounding.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from cleanroom.errors import BudgetExceeded, InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from cleanroom.private_files import private_file, restrict

RELATIVE_TOLERANCE = Fraction(1, 10**12)
_BUSY_TIMEOUT_S = 60.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    release_id TEXT NOT NULL UNIQUE,
    rho TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    job_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    reserved_at TEXT NOT NULL,
    released_at TEXT,
    round_number INTEGER
)""",
)
_ROUND_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS releases_plan_round ON releases (plan_hash, round_number)"
_COLUMNS = "release_id, rho, plan_hash, job_id, detail, reserved_at, released_at"
Rho = float | int | Fraction


def rho_text(rho: Rho) -> str:
    """Exact text of a rho value; `Fraction(rho_text(x)) == Fraction(x)` for Fractions and ints."""
    if isinstance(rho, bool) or not isinstance(rho, float | int | Fraction):
        raise InvalidInput(f"rho ({rho!r}) must be a float, int or Fraction")
    if isinstance(rho, float) and not math.isfinite(rho):
        raise InvalidInput(f"rho ({rho!r}) must be finite")
    if isinstance(rho, Fraction):
        return f"{rho.numerator}/{rho.denominator}"
    return repr(rho)


def _private_database(path: Path) -> None:
    """Create the database file 0600 (in a 0700 directory if missing) before SQLite opens it: SQLite gives
    its -wal and -shm files the database file's mode. Existing files readable by others are tightened."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        restrict(path.with_name(path.name + suffix))


def _show(value: Fraction) -> str:
    return f"{float(value):.12g}"


def _same_rho(a: Fraction, b: Fraction) -> bool:
    return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b))


def _exceeds(spent: Fraction, requested: Fraction, allowed: Fraction) -> bool:
    return spent + requested > allowed * (1 + RELATIVE_TOLERANCE)


@dataclass(frozen=True)
class BudgetLimit:
    """A cap checked inside the reserve transaction: the charges of one plan (and of one job of it)."""

    label: str
    rho: Rho
    plan_hash: str
    job_id: str | None = None  # None: every job of the plan

    def __post_init__(self) -> None:
        if Fraction(rho_text(self.rho)) < 0:
            raise InvalidInput(f"budget limit {self.label}: rho ({self.rho}) must be >= 0")

    def spent_in(self, conn: sqlite3.Connection) -> Fraction:
        if self.job_id is None:
            rows = conn.execute("SELECT rho FROM releases WHERE plan_hash = ?", (self.plan_hash,))
        else:
            query = "SELECT rho FROM releases WHERE plan_hash = ? AND job_id = ?"
            rows = conn.execute(query, (self.plan_hash, self.job_id))
        return sum((Fraction(text) for (text,) in rows), Fraction(0))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Reservation:
    """One charged release. `new` is True only for the `reserve` call that made the charge."""

    release_id: str
    rho_text: str
    plan_hash: str
    job_id: str
    detail: Mapping[str, Any] = field(compare=False)
    reserved_at: str
    released_at: str | None
    new: bool = False

    @property
    def rho(self) -> float:
        return float(Fraction(self.rho_text))

    @property
    def released(self) -> bool:
        return self.released_at is not None

    @classmethod
    def from_row(cls, row: tuple[Any, ...], new: bool = False) -> Reservation:
        release_id, rho, plan_hash, job_id, detail, reserved_at, released_at = row
        return cls(release_id, rho, plan_hash, job_id, json.loads(detail), reserved_at, released_at, new)


def _migrate(conn: sqlite3.Connection) -> None:
    """Older ledgers: add the round column (from each entry's detail) and scrub any stored noised vector."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(releases)")}
    if "round_number" not in columns:
        conn.execute("ALTER TABLE releases ADD COLUMN round_number INTEGER")
        conn.execute("UPDATE releases SET round_number = json_extract(detail, '$.round')")
    if "payload" in columns:
        conn.execute("UPDATE releases SET payload = NULL WHERE payload IS NOT NULL")


class Ledger:
    """The privacy budget (total rho, zCDP) of one dataset and every release charged against it."""

    def __init__(self, path: str | Path, total_rho: Rho) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        text = rho_text(total_rho)
        self._total = Fraction(text)
        if self._total <= 0:
            raise InvalidInput(f"total_rho ({total_rho}) of ledger {self.path} must be > 0")
        _private_database(self.path)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with self._immediate(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)
                _migrate(conn)
                conn.execute(_ROUND_INDEX)
                row = conn.execute("SELECT value FROM meta WHERE key = 'total_rho'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta (key, value) VALUES ('total_rho', ?)", (text,))
                elif not _same_rho(Fraction(row[0]), self._total):
                    raise PreconditionFailed(
                        f"ledger {self.path} was created with total rho {row[0]}, not {text}; "
                        "a dataset's budget cannot be changed by reopening its ledger"
                    )

    @property
    def total_rho(self) -> float:
        return float(self._total)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection for the ledger's life, one operation at a time (a lock: safe across threads);
        # processes coordinate through SQLite's locks. Every COMMIT is durable (WAL, synchronous=FULL);
        # reopening per operation only added a checkpoint and its fsyncs at every close (57 ms -> 11 ms
        # for a reservation plus its release mark).
        with self._lock:
            if self._conn is None:
                conn = sqlite3.connect(
                    self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA synchronous=FULL")
                self._conn = conn
                # sqlite3 connections sit in a reference cycle (their statement cache): close ours as
                # soon as the ledger goes, as the per-operation connections did, not at a later GC
                weakref.finalize(self, conn.close)
            yield self._conn

    def close(self) -> None:
        """Close the connection (a later operation reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @staticmethod
    @contextmanager
    def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _spent_in(conn: sqlite3.Connection) -> Fraction:
        return sum((Fraction(text) for (text,) in conn.execute("SELECT rho FROM releases")), Fraction(0))

    def reserve(
        self,
        release_id: str,
        rho: Rho,
        plan_hash: str,
        job_id: str,
        detail: Mapping[str, Any] | None = None,
        *,
        round_number: int | None = None,
        limits: Sequence[BudgetLimit] = (),
        max_jobs: int = 0,
    ) -> Reservation:
        """Charge `rho` for a new `release_id`, durably and atomically with every limit check.

        Refused (nothing recorded) if the release id was charged before, if the plan already used
        `round_number`, if the dataset total or any `limits` would be exceeded, or if the release would
        start a job beyond the plan's `max_jobs` (0 = no limit).
        """
        text = rho_text(rho)
        requested = Fraction(text)
        if requested <= 0 or not release_id:
            raise InvalidInput(f"release {release_id!r} in ledger {self.path}: rho ({text}) must be > 0")
        try:
            detail_json = json.dumps(dict(detail or {}), sort_keys=True)
        except (TypeError, ValueError) as err:
            raise InvalidInput(f"detail of release {release_id!r} is not JSON-serialisable: {err}") from err
        with self._connect() as conn, self._immediate(conn):
            self._check_new(conn, release_id, plan_hash, round_number)
            self._check_budget(conn, release_id, requested, limits)
            self._check_jobs(conn, plan_hash, job_id, max_jobs)
            reserved_at = _now()
            conn.execute(
                "INSERT INTO releases (release_id, rho, plan_hash, job_id, detail, reserved_at, "
                "round_number) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (release_id, text, plan_hash, job_id, detail_json, reserved_at, round_number),
            )
        detail_copy = json.loads(detail_json)
        return Reservation(release_id, text, plan_hash, job_id, detail_copy, reserved_at, None, new=True)

    def _check_new(
        self, conn: sqlite3.Connection, release_id: str, plan_hash: str, round_number: int | None
    ) -> None:
        if conn.execute("SELECT 1 FROM releases WHERE release_id = ?", (release_id,)).fetchone():
            raise PreconditionFailed(
                f"release {release_id!r} was already charged in ledger {self.path}; a release is answered "
                "in exactly one session"
            )
        if round_number is None:
            return
        query = "SELECT release_id FROM releases WHERE plan_hash = ? AND round_number = ?"
        row = conn.execute(query, (plan_hash, round_number)).fetchone()
        if row is not None:
            raise PreconditionFailed(
                f"round {round_number} of plan {plan_hash[:12]} was already opened (release {row[0]!r}); "
                "a round, and its session id, is used once"
            )

    def _check_budget(
        self, conn: sqlite3.Connection, release_id: str, requested: Fraction, limits: Sequence[BudgetLimit]
    ) -> None:
        spent = self._spent_in(conn)
        if _exceeds(spent, requested, self._total):
            raise BudgetExceeded(
                f"privacy budget of ledger {self.path} exceeded by release {release_id!r}: spent "
                f"{_show(spent)}, requested {_show(requested)}, total {_show(self._total)} (rho, zCDP)"
            )
        for limit in limits:
            charged = limit.spent_in(conn)
            allowed = Fraction(rho_text(limit.rho))
            if _exceeds(charged, requested, allowed):
                raise BudgetExceeded(
                    f"release {release_id!r}: rho {_show(requested)} would bring {limit.label} to "
                    f"{_show(charged + requested)}, over its limit {_show(allowed)} (rho, zCDP)"
                )

    @staticmethod
    def _check_jobs(conn: sqlite3.Connection, plan_hash: str, job_id: str, max_jobs: int) -> None:
        if max_jobs <= 0:
            return
        query = "SELECT DISTINCT job_id FROM releases WHERE plan_hash = ?"
        jobs = {row[0] for row in conn.execute(query, (plan_hash,))}
        if job_id not in jobs and len(jobs) >= max_jobs:
            raise PermissionDenied(f"the plan allows {max_jobs} jobs, all already run")

    def mark_released(self, release_id: str) -> None:
        """Record that the release was sent (the first time only); the charge stays either way."""
        with self._connect() as conn, self._immediate(conn):
            updated = conn.execute(
                "UPDATE releases SET released_at = COALESCE(released_at, ?) WHERE release_id = ?",
                (_now(), release_id),
            ).rowcount
            if updated == 0:
                raise NotFound(f"release {release_id!r} has no reservation in ledger {self.path}")

    def spent_exact(self) -> Fraction:
        with self._connect() as conn:
            return self._spent_in(conn)

    def spent(self) -> float:
        return float(self.spent_exact())

    def remaining(self) -> float:
        return float(max(Fraction(0), self._total - self.spent_exact()))

    def entries(self) -> list[Reservation]:
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM releases ORDER BY seq").fetchall()
        return [Reservation.from_row(row) for row in rows]

    def entry(self, release_id: str) -> Reservation | None:
        """The reservation of `release_id`, if it was charged (an indexed lookup, not a scan)."""
        with self._connect() as conn:
            query = f"SELECT {_COLUMNS} FROM releases WHERE release_id = ?"
            row = conn.execute(query, (release_id,)).fetchone()
        return Reservation.from_row(row) if row is not None else None

    def spent_by_plan(self) -> dict[str, float]:
        totals: dict[str, Fraction] = {}
        for entry in self.entries():
            totals[entry.plan_hash] = totals.get(entry.plan_hash, Fraction(0)) + Fraction(entry.rho_text)
        return {plan: float(total) for plan, total in totals.items()}
