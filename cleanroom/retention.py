"""Retention of delivered outputs: job output folders older than the plan's `retention_days` are deleted.

Age is measured from the delivery stamp (`.delivered.json`, written by `mark_delivered` when the outputs are
complete), not from file times that copying or touching can change. A folder without a readable stamp falls
back to its modification time so abandoned partial deliveries do not live forever. Every deletion (and every
failed one) is recorded in the party's audit log.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cleanroom.audit import DELETED, ERROR, AuditLog
from cleanroom.errors import InvalidInput

STAMP_NAME = ".delivered.json"


def mark_delivered(
    job_dir: str | Path, now: datetime, *, job_id: str | None = None, plan_hash: str | None = None
) -> Path:
    """Write the delivery stamp into a finished job output folder (atomically); return its path."""
    _require_aware(now)
    job_dir = Path(job_dir)
    stamp = job_dir / STAMP_NAME
    tmp = job_dir / (STAMP_NAME + ".tmp")
    document = {"delivered_at": now.astimezone(UTC).isoformat(), "job_id": job_id or job_dir.name,
                "plan_hash": plan_hash}  # fmt: skip
    tmp.write_text(json.dumps(document, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, stamp)
    return stamp


@dataclass(frozen=True)
class Delivery:
    """When a job output folder was delivered and how that was established (`stamp` or `mtime`)."""

    path: Path
    delivered_at: datetime
    basis: str
    job_id: str
    plan_hash: str | None


def delivery_of(job_dir: Path) -> Delivery:
    try:
        document = json.loads((job_dir / STAMP_NAME).read_text(encoding="utf-8"))
        moment = datetime.fromisoformat(document["delivered_at"])
        if moment.tzinfo is None:
            raise ValueError("naive delivered_at")
        return Delivery(job_dir, moment, "stamp", str(document.get("job_id") or job_dir.name),
                        document.get("plan_hash"))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        moment = datetime.fromtimestamp(job_dir.stat().st_mtime, UTC)
        return Delivery(job_dir, moment, "mtime", job_dir.name, None)


def prune(
    outputs_dir: str | Path, retention_days: float, now: datetime, audit_log: AuditLog | None
) -> list[Path]:
    """Delete job output folders under `outputs_dir` delivered more than `retention_days` before `now`.

    Only direct sub-directories are considered (symlinks are never followed or removed). Returns the removed
    folders; each removal, or failure to remove, is appended to `audit_log` (event `retention_delete`).
    """
    _require_aware(now)
    if not retention_days >= 0:
        raise InvalidInput(f"retention_days ({retention_days}) must be >= 0")
    outputs_dir = Path(outputs_dir)
    if not outputs_dir.is_dir():
        return []
    cutoff = now - timedelta(days=retention_days)
    removed = []
    for job_dir in sorted(outputs_dir.iterdir()):
        if job_dir.is_symlink() or not job_dir.is_dir() or job_dir.name.startswith("."):
            continue
        delivery = delivery_of(job_dir)
        if delivery.delivered_at >= cutoff:
            continue
        if _remove(delivery, now, retention_days, audit_log):
            removed.append(job_dir)
    return removed


def _remove(delivery: Delivery, now: datetime, retention_days: float, audit_log: AuditLog | None) -> bool:
    detail = {
        "path": str(delivery.path), "delivered_at": delivery.delivered_at.astimezone(UTC).isoformat(),
        "basis": delivery.basis, "age_days": round((now - delivery.delivered_at).total_seconds() / 86400, 3),
        "retention_days": retention_days,
    }  # fmt: skip
    try:
        shutil.rmtree(delivery.path)
        outcome = DELETED
    except OSError as exc:
        outcome, detail["error"] = ERROR, str(exc)
    if audit_log is not None:
        audit_log.append(
            "retention_delete", outcome, job_id=delivery.job_id, plan_hash=delivery.plan_hash,
            requester="retention", detail=detail, time=now,
        )  # fmt: skip
    return outcome == DELETED


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise InvalidInput(f"time {moment} must be timezone-aware")
