"""The coordinator's job log: one JSON Lines file of what each job did, for operators (not a privacy record).

Every line is an event of one job: `job_started` (plan hash, parties), `stage` (name, start time, seconds,
outcome), `party_dropped` (party, stage, reason) and `job_finished` (outcome, total seconds, participating
and dropped parties, bytes sent/received per party). Stage timings use a monotonic clock; times are UTC ISO.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleanroom.errors import InvalidInput, PreconditionFailed


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobLog:
    """Appends job events to `path` (thread-safe; each event is one O_APPEND write, fsync'd)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = _now_iso,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()

    def record(self, job_id: str, event: str, **fields: Any) -> dict[str, Any]:
        entry = {"time": self.wall(), "job_id": job_id, "event": event, **fields}
        line = (json.dumps(entry, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def start(self, job_id: str, plan_hash: str, parties: Sequence[str]) -> JobRun:
        """Write `job_started` and return the handle that records the job's stages."""
        if not job_id:
            raise InvalidInput(f"job log {self.path}: job_id must not be empty")
        self.record(job_id, "job_started", plan_hash=plan_hash, parties=list(parties))
        return JobRun(self, job_id, plan_hash, tuple(parties))


class JobRun:
    """One job's recorder: `stage(...)` contexts, `dropped(...)`, `add_bytes(...)`, then `finish(...)`."""

    def __init__(self, log: JobLog, job_id: str, plan_hash: str, parties: tuple[str, ...]) -> None:
        self.log = log
        self.job_id = job_id
        self.plan_hash = plan_hash
        self.parties = parties
        self.dropped_parties: dict[str, str] = {}
        self.bytes_sent: dict[str, int] = {}
        self.bytes_received: dict[str, int] = {}
        self.started = log.clock()
        self.finished = False

    @contextmanager
    def stage(self, name: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Time a stage; the yielded dict can collect extra fields; an exception is logged and re-raised."""
        extra: dict[str, Any] = dict(fields)
        wall, begin = self.log.wall(), self.log.clock()
        outcome = "ok"
        try:
            yield extra
        except BaseException as exc:
            outcome = f"error: {type(exc).__name__}: {exc}"
            raise
        finally:
            seconds = round(self.log.clock() - begin, 6)
            self.log.record(
                self.job_id, "stage", stage=name, started=wall, seconds=seconds, outcome=outcome, **extra
            )

    def dropped(self, party: str, stage: str, reason: str) -> None:
        self.dropped_parties[party] = stage
        self.log.record(self.job_id, "party_dropped", party=party, stage=stage, reason=reason)

    def add_bytes(self, party: str, sent: int = 0, received: int = 0) -> None:
        self.bytes_sent[party] = self.bytes_sent.get(party, 0) + sent
        self.bytes_received[party] = self.bytes_received.get(party, 0) + received

    def finish(self, outcome: str, detail: str | Mapping[str, Any] | None = None) -> dict[str, Any]:
        if self.finished:
            raise PreconditionFailed(f"job {self.job_id} already finished in {self.log.path}")
        self.finished = True
        return self.log.record(
            self.job_id, "job_finished", outcome=outcome, plan_hash=self.plan_hash,
            seconds=round(self.log.clock() - self.started, 6),
            participating=[p for p in self.parties if p not in self.dropped_parties],
            dropped=dict(self.dropped_parties), bytes_sent=dict(self.bytes_sent),
            bytes_received=dict(self.bytes_received),
            detail=dict(detail) if isinstance(detail, Mapping) else detail,
        )  # fmt: skip


def read_job_log(path: str | Path, job_id: str | None = None) -> list[dict[str, Any]]:
    text = Path(path).read_text(encoding="utf-8")
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [e for e in events if job_id is None or e.get("job_id") == job_id]


def summarize_jobs(path: str | Path) -> str:
    """One block per job: stages with timings, dropped parties, bytes and the outcome."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for event in read_job_log(path):
        jobs.setdefault(str(event.get("job_id")), []).append(event)
    out = []
    for job_id, events in jobs.items():
        out.append(f"Job {job_id}")
        for e in events:
            out.append("  " + _describe(e))
    return "\n".join(out) + "\n"


def _describe(e: Mapping[str, Any]) -> str:
    kind = e.get("event")
    if kind == "job_started":
        parties = ", ".join(e.get("parties", []))
        return f"{e['time']} started (plan {str(e.get('plan_hash'))[:12]}) with {parties}"
    if kind == "stage":
        return f"{e['time']} stage {e.get('stage')}: {e.get('seconds')} s, {e.get('outcome')}"
    if kind == "party_dropped":
        return f"{e['time']} dropped {e.get('party')} at {e.get('stage')}: {e.get('reason')}"
    if kind == "job_finished":
        sent, received = sum(e.get("bytes_sent", {}).values()), sum(e.get("bytes_received", {}).values())
        return (
            f"{e['time']} finished: {e.get('outcome')} after {e.get('seconds')} s; participating "
            f"{', '.join(e.get('participating', []))}; dropped {sorted(e.get('dropped', {}))}; "
            f"{sent} bytes sent, {received} received"
        )
    return f"{e.get('time')} {kind}"
