"""Retention of delivered results: once a delivery is older than the plan's `retention_days`, its files go.

A party's output folder holds the latest delivered results, stamped by `mark_delivered` (`.delivered.json`)
when they are complete. Age is measured from that stamp, not from file times that copying or touching can
change; a folder without a stamp is never touched. Only the named result files and the stamp are deleted
(never the operator's own files), and every deletion, or failure to delete, is recorded in the audit log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cleanroom.audit import DELETED, ERROR, AuditLog
from cleanroom.errors import InvalidInput

STAMP_NAME = ".delivered.json"


def mark_delivered(
    job_dir: str | Path, now: datetime, *, job_id: str | None = None, plan_hash: str | None = None
) -> Path:
    """Stamp an output folder whose results are complete (atomically); return the stamp's path."""
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
    """When an output folder's results were delivered and how that was established (`stamp` or `mtime`)."""

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
    directory: str | Path,
    retention_days: float,
    now: datetime,
    audit_log: AuditLog | None,
    file_names: Iterable[str],
) -> list[Path]:
    """Delete the delivered `file_names` in `directory` once its stamp is older than `retention_days`.

    Returns the removed files; the deletion is appended to `audit_log` (event `retention_delete`).
    """
    _require_aware(now)
    if not retention_days >= 0:
        raise InvalidInput(f"retention_days ({retention_days}) must be >= 0")
    directory = Path(directory)
    if not (directory / STAMP_NAME).is_file():
        return []
    delivery = delivery_of(directory)
    if delivery.delivered_at >= now - timedelta(days=retention_days):
        return []
    present = [directory / name for name in file_names if (directory / name).is_file()]
    detail: dict[str, object] = {
        "files": [p.name for p in present], "path": str(directory), "retention_days": retention_days,
        "delivered_at": delivery.delivered_at.astimezone(UTC).isoformat(), "basis": delivery.basis,
    }  # fmt: skip
    try:
        for path in [*present, directory / STAMP_NAME]:
            path.unlink()
        outcome = DELETED
    except OSError as exc:
        outcome, detail["error"] = ERROR, str(exc)
    if audit_log is not None:
        audit_log.append(
            "retention_delete", outcome, job_id=delivery.job_id, plan_hash=delivery.plan_hash,
            requester="retention", detail=detail, time=now,
        )  # fmt: skip
    return present if outcome == DELETED else []


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise InvalidInput(f"time {moment} must be timezone-aware")
