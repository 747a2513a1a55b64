"""The party's audit log: an append-only, hash-chained JSON Lines file of every request answered or refused.

Each line is one entry with `seq` (1, 2, ...), `time` (UTC ISO 8601), `prev_hash` (the previous entry's
`hash`, 64 zeros for the first) and `hash` = SHA-256 of the canonical JSON (sorted keys, compact separators,
ASCII) of the entry without `hash`. Editing, deleting, inserting or reordering lines breaks the chain at the
first affected line, which `verify` names. Deleting the *last* lines leaves a valid shorter chain, so after
every append the writer also replaces `<log>.head` atomically with the last `seq` and `hash`; `verify`
compares the log's end with it. Whoever can rewrite both files can forge a consistent history: copy the head
elsewhere (or show it to the other parties) to make that detectable too. See docs/governance.md.

Every entry is bounded, whoever supplied its values (a refused caller controls plan hashes, ids and error
texts): strings are cut at `MAX_TEXT_CHARS` with a marker naming their full length, lists and mappings at
`MAX_ITEMS` items and `MAX_DEPTH` levels, and a line still over `MAX_ENTRY_BYTES` has its largest fields
replaced by a marker. The log and its head file are created with mode 0600.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleanroom.errors import InvalidInput, NotFound, PreconditionFailed
from cleanroom.private_files import FILE_MODE, private_dir, restrict

GENESIS_HASH = "0" * 64
ANSWERED = "answered"
REFUSED = "refused"
DELETED = "deleted"
ERROR = "error"
RESERVED = "reserved"  # outcome of a "charge" entry: the ledger reserved a release's rho
CHARGE = "charge"
SUPPRESSED_EVENT = "refusals_suppressed"  # one entry summarising refusals the rate limit did not log singly
ENTRY_FIELDS = (
    "seq", "time", "prev_hash", "event", "job_id", "round", "requester", "plan_hash", "cliques",
    "statistic", "noise_scale", "rho_charged", "rho_remaining", "outcome", "detail", "hash",
)  # fmt: skip
CHARGE_FIELDS = ("release_id", "rho")  # only in "charge" entries: the ledger's release id and exact rho text
MAX_TEXT_CHARS = 1024
MAX_ITEMS = 256
MAX_DEPTH = 4
MAX_ENTRY_BYTES = 16 * 1024
_FIXED_FIELDS = ("time", "event", "outcome")  # never replaced when an entry is over the size limit

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def canonical_json(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of the entry without its `hash` field."""
    return hashlib.sha256(canonical_json({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def head_path(log_path: str | Path) -> Path:
    log_path = Path(log_path)
    return log_path.with_name(log_path.name + ".head")


def utc_now() -> datetime:
    return datetime.now(UTC)


def bounded_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` if it has at most `limit` characters, else its start and a marker with the full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[truncated, {len(text)} chars]"


def bounded(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of `value` with every string, list and mapping cut to the audit log's limits."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return bounded_text(value)
    if depth >= MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {bounded_text(str(k), 128): bounded(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["..."] = f"[{len(items) - MAX_ITEMS} more items]"
        return out
    if isinstance(value, list | tuple):
        kept = [bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
        return kept + [f"[... {len(value) - MAX_ITEMS} more items]"] if len(value) > MAX_ITEMS else kept
    return bounded_text(str(value))


def _fit(fields: dict[str, Any], limit: int) -> dict[str, Any]:
    """Replace the largest variable fields by a marker until the entry's JSON is at most `limit` bytes."""
    sizes = {k: len(canonical_json(v)) for k, v in fields.items() if k not in _FIXED_FIELDS}
    total = len(canonical_json(fields))
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= limit:
            break
        marker = f"[omitted: {sizes[key]} bytes over the audit entry limit]"
        total += len(canonical_json(marker)) - sizes[key]
        fields[key] = marker
    return fields


def _thread_lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


class AuditLog:
    """Appends hash-chained entries; safe across threads (a lock per file) and processes (flock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.head_path = head_path(self.path)
        self._lock = _thread_lock(self.path)
        private_dir(self.path.parent)
        restrict(self.path)
        restrict(self.head_path)

    def append(
        self,
        event: str,
        outcome: str,
        *,
        job_id: str | None = None,
        round: int | str | None = None,
        requester: str | None = None,
        plan_hash: str | None = None,
        cliques: Sequence[Sequence[str]] | None = None,
        statistic: str | None = None,
        noise_scale: float | None = None,
        rho_charged: float | None = None,
        rho_remaining: float | None = None,
        detail: str | Mapping[str, Any] | None = None,
        time: datetime | None = None,
        release_id: str | None = None,
        rho: str | None = None,
    ) -> dict[str, Any]:
        """Write one entry (fsync'd, then the head file) and return it.

        `event` says what was asked (e.g. "measure", "start_job", "retention_delete", "charge"); `outcome`
        is `answered`, `refused`, `deleted`, `error` or (for "charge") `reserved`; `noise_scale` is the
        party's noise standard deviation. `release_id` and `rho` (the ledger's exact rho text) appear only
        in entries that give them. Every value is bounded (see the module docstring).
        """
        if not event or not outcome:
            raise InvalidInput(f"audit log {self.path}: event and outcome must be non-empty")
        fields: dict[str, Any] = {
            "time": _iso(time or utc_now()), "event": bounded_text(event, 128), "job_id": job_id,
            "round": round, "requester": requester, "plan_hash": plan_hash,
            "cliques": [list(c) for c in cliques] if cliques is not None else None,
            "statistic": statistic, "noise_scale": noise_scale, "rho_charged": rho_charged,
            "rho_remaining": rho_remaining, "outcome": bounded_text(outcome, 128),
            "detail": dict(detail) if isinstance(detail, Mapping) else detail,
        }  # fmt: skip
        for name, value in zip(CHARGE_FIELDS, (release_id, rho), strict=True):
            if value is not None:
                fields[name] = value
        fields = _fit({k: bounded(v) for k, v in fields.items()}, MAX_ENTRY_BYTES - 256)  # 256: seq, hashes
        with self._lock, self._file() as fd:
            seq, prev_hash = _last_seq_and_hash(fd, self.path)
            entry = {"seq": seq + 1, "prev_hash": prev_hash, **fields}
            entry["hash"] = entry_hash(entry)
            line = canonical_json(entry) + b"\n"
            _write_all(fd, line)
            os.fsync(fd)
            self._write_head(entry["seq"], entry["hash"])
        return entry

    @contextmanager
    def _file(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the flock

    def _write_head(self, seq: int, hash_hex: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # a leftover temporary file keeps its old mode under O_TRUNC
            _write_all(fd, canonical_json({"seq": seq, "hash": hash_hex}) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.head_path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise InvalidInput(f"audit time {moment} must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _last_seq_and_hash(fd: int, path: Path) -> tuple[int, str]:
    """The last entry's seq and hash, reading backwards from the end (the log can be large)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS_HASH
    tail = b""
    position = size
    while position > 0 and tail.count(b"\n") < 2:
        step = min(65536, position)
        position -= step
        tail = os.pread(fd, step, position) + tail
    if not tail.endswith(b"\n"):
        raise PreconditionFailed(f"audit log {path} ends with an incomplete line (see `audit verify`)")
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    try:
        entry = json.loads(last)
        return int(entry["seq"]), str(entry["hash"])
    except (ValueError, KeyError, TypeError):
        raise PreconditionFailed(f"audit log {path}: last line is not an entry (see audit verify)") from None


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `verify`: `ok`, the entries checked, and the first bad line (1-based) with the reason."""

    path: str
    ok: bool
    entries: int
    last_seq: int
    last_hash: str
    first_bad_line: int | None = None
    problem: str = ""
    anchored: bool = False
    note: str = ""

    def describe(self) -> str:
        if not self.ok:
            return f"{self.path}: BROKEN at line {self.first_bad_line}: {self.problem}"
        anchor = "matches its head file" if self.anchored else "no head file (tail truncation undetectable)"
        note = f" ({self.note})" if self.note else ""
        return f"{self.path}: OK, {self.entries} entries, last seq {self.last_seq}, {anchor}{note}"


def read_entries(path: str | Path) -> list[dict[str, Any]]:
    """All entries, without checking the chain (use `verify` for that)."""
    lines = Path(path).read_bytes().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def verify(path: str | Path, head: str | Path | None = None, *, require_head: bool = False) -> VerifyResult:
    """Check the chain line by line, then the end against the head file (default `<log>.head`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"audit log {path} does not exist") from None
    chain = _check_chain(str(path), data)
    if not chain.ok:
        return chain
    head_file = Path(head) if head is not None else head_path(path)
    if not head_file.exists():
        if require_head:
            return _bad(chain, chain.entries + 1, f"head file {head_file} is missing")
        return chain
    return _check_head(chain, data, head_file)


def _bad(base: VerifyResult, line: int, problem: str) -> VerifyResult:
    return VerifyResult(base.path, False, base.entries, base.last_seq, base.last_hash, line, problem)


def _check_chain(source: str, data: bytes) -> VerifyResult:
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    seq, prev = 0, GENESIS_HASH
    for number, raw in enumerate(complete, start=1):
        problem = _line_problem(raw, seq + 1, prev)
        if problem:
            return VerifyResult(source, False, seq, seq, prev, number, problem)
        seq, prev = seq + 1, json.loads(raw)["hash"]
    if tail:
        problem = "incomplete last line (truncated write)"
        return VerifyResult(source, False, seq, seq, prev, len(complete) + 1, problem)
    return VerifyResult(source, True, seq, seq, prev)


def _line_problem(raw: bytes, expected_seq: int, expected_prev: str) -> str:
    try:
        entry = json.loads(raw)
    except ValueError:
        return "not valid JSON"
    if not isinstance(entry, dict) or not {"seq", "prev_hash", "hash"} <= set(entry):
        return "not an audit entry (needs seq, prev_hash and hash)"
    if entry_hash(entry) != entry["hash"]:
        return f"entry seq {entry['seq']} was edited (its hash does not match its content)"
    if entry["seq"] != expected_seq:
        ahead = isinstance(entry["seq"], int) and entry["seq"] > expected_seq
        kind = "deleted" if ahead else "reordered/duplicated"
        return f"seq {entry['seq']} where {expected_seq} was expected (entries {kind})"
    if entry["prev_hash"] != expected_prev:
        return f"prev_hash of seq {expected_seq} does not match the previous entry (chain spliced)"
    return ""


def _check_head(chain: VerifyResult, data: bytes, head_file: Path) -> VerifyResult:
    try:
        head = json.loads(head_file.read_text(encoding="utf-8"))
        head_seq, head_hash = int(head["seq"]), str(head["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return _bad(chain, chain.entries + 1, f"head file {head_file} is unreadable")
    if head_seq > chain.last_seq:
        return _bad(
            chain, chain.last_seq + 1,
            f"log ends at seq {chain.last_seq} but {head_file.name} records seq {head_seq}: tail truncated",
        )  # fmt: skip
    lines = data.split(b"\n")
    at_head = json.loads(lines[head_seq - 1])["hash"] if head_seq > 0 else GENESIS_HASH
    if at_head != head_hash:
        problem = f"entry seq {head_seq} differs from {head_file.name}: log rewritten"
        return _bad(chain, max(head_seq, 1), problem)
    note = ""
    if head_seq < chain.last_seq:
        note = f"head lags by {chain.last_seq - head_seq} entries (interrupted append?)"
    return VerifyResult(
        chain.path, True, chain.entries, chain.last_seq, chain.last_hash, anchored=True, note=note
    )


def summarize(path: str | Path) -> str:
    """A readable report: chain status, budget charged per job over time, refusals and deletions."""
    result = verify(path)
    entries = read_entries(path) if result.ok else _readable_prefix(Path(path))
    out = [result.describe(), ""]
    jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("rho_charged") is not None or entry.get("job_id") is not None:
            key = (str(entry.get("plan_hash") or "-"), str(entry.get("job_id") or "-"))
            jobs.setdefault(key, []).append(entry)
    for (plan_hash, job_id), job_entries in jobs.items():
        out += _job_section(plan_hash, job_id, job_entries)
    refusals = [e for e in entries if e.get("outcome") == REFUSED]
    suppressed = sum(_suppressed(e) for e in refusals)
    logged = sum(e.get("event") != SUPPRESSED_EVENT for e in refusals)
    note = f" ({suppressed} of them not logged one by one: rate limit per caller)" if suppressed else ""
    out.append(f"Refusals: {logged + suppressed}{note}")
    out += [
        f"  {e.get('time')}  {e.get('event')}  job {e.get('job_id') or '-'}  by {e.get('requester') or '-'}: "
        f"{_detail(e)}"
        for e in refusals
    ]
    deletions = [e for e in entries if e.get("outcome") == DELETED]
    out.append(f"Deletions: {len(deletions)}")
    out += [f"  {e.get('time')}  job {e.get('job_id') or '-'}: {_detail(e)}" for e in deletions]
    return "\n".join(out) + "\n"


def _suppressed(entry: Mapping[str, Any]) -> int:
    detail = entry.get("detail")
    if entry.get("event") != SUPPRESSED_EVENT or not isinstance(detail, dict):
        return 0
    count = detail.get("suppressed")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def _readable_prefix(path: Path) -> list[dict[str, Any]]:
    entries = []
    for raw in path.read_bytes().split(b"\n"):
        try:
            entries.append(json.loads(raw))
        except ValueError:
            break
    return [e for e in entries if isinstance(e, dict)]


def _job_section(plan_hash: str, job_id: str, entries: list[dict[str, Any]]) -> list[str]:
    answered = [e for e in entries if e.get("outcome") == ANSWERED]
    spent = sum(float(e.get("rho_charged") or 0.0) for e in answered)
    lines = [
        f"Job {job_id} (plan {plan_hash[:12]}): {len(answered)} answered, "
        f"{sum(e.get('outcome') == REFUSED for e in entries)} refused, rho charged {spent:.6g}",
        f"  {'time':<27} {'round':<8} {'event':<16} {'outcome':<9} {'rho':>10} {'cumulative':>11} "
        f"{'remaining':>11}",
    ]
    cumulative = 0.0
    for e in entries:
        charged = float(e.get("rho_charged") or 0.0) if e.get("outcome") == ANSWERED else 0.0
        cumulative += charged
        remaining = e.get("rho_remaining")
        lines.append(
            f"  {e.get('time', ''):<27} {_or_dash(e.get('round')):<8} {str(e.get('event')):<16} "
            f"{str(e.get('outcome')):<9} {charged:>10.4g} {cumulative:>11.4g} "
            f"{'-' if remaining is None else format(float(remaining), '.4g'):>11}"
        )
    return [*lines, ""]


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _detail(entry: Mapping[str, Any]) -> str:
    detail = entry.get("detail")
    return json.dumps(detail, sort_keys=True) if isinstance(detail, dict) else str(detail or "")


def rho_charged_by_plan(path: str | Path) -> dict[str, float]:
    """Total rho charged by answered entries, per plan hash (to compare with the ledger's spend)."""
    totals: dict[str, float] = {}
    for entry in read_entries(path):
        if entry.get("outcome") == ANSWERED and entry.get("rho_charged") is not None:
            key = str(entry.get("plan_hash") or "-")
            totals[key] = totals.get(key, 0.0) + float(entry["rho_charged"])
    return totals
