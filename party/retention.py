"""Retention of delivered results in a party's flat output folder (`cleanroom party prune`, and at start-up).

`ResultWriter.finish` stamps the folder with `cleanroom.retention.mark_delivered`; once that stamp is older
than the plan's `retention_days`, the delivered result files (only the known names) and the stamp are deleted
and the deletion is written to the party's audit log. A folder without a stamp is never touched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from transport.wire import RETAINED_FILE_NAMES


def prune_results(directory: Path, retention_days: float, now: datetime, audit: Any | None) -> list[Path]:
    """Delete expired delivered results in `directory`; returns the removed files."""
    from cleanroom.retention import STAMP_NAME, delivery_of

    if not (directory / STAMP_NAME).is_file():
        return []
    delivery = delivery_of(directory)
    if delivery.delivered_at >= now - timedelta(days=retention_days):
        return []
    removed = [directory / name for name in RETAINED_FILE_NAMES if (directory / name).is_file()]
    for path in [*removed, directory / STAMP_NAME]:
        path.unlink()
    if audit is not None:
        detail = {
            "files": [p.name for p in removed],
            "path": str(directory),
            "retention_days": retention_days,
            "delivered_at": delivery.delivered_at.astimezone(UTC).isoformat(),
        }
        audit.append(
            "retention_delete",
            "deleted",
            job_id=delivery.job_id,
            plan_hash=delivery.plan_hash,
            requester="retention",
            detail=detail,
            time=now,
        )
    return removed


def now_utc() -> datetime:
    return datetime.now(UTC)
