"""Start-up check that the party's ledger, audit log and reveal record tell one story.

The ledger alone says how much of the dataset's budget is left: deleting it would silently reset the budget
and restoring an old copy would roll it back. After every reservation the node appends a "charge" entry to
its hash-chained audit log (`append_charge`, called by `PartyNode.record_charge`) naming the release id and
the exact rho text the ledger stored. Before serving, `check_state` requires:

- the audit log's hash chain (and its head anchor, if present) verifies;
- every audit charge is in the ledger with the same release id and rho text (so the ledger has at least as
  many entries as the audit log has charges; else the ledger was deleted, replaced or rolled back);
- every ledger entry has its audit charge; only the most recent may lack it (a crash between the ledger
  commit and the audit append), and then its entry is appended now, marked recovered;
- a non-empty ledger has an audit log and a reveal record beside it (both exist from the node's first start).

Any disagreement raises `StateMismatch`, one line naming the files; the recovery procedure is in
docs/operations.md ("When the ledger and the audit log disagree").
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanroom.audit import CHARGE, RESERVED, AuditLog, bounded_text, head_path, read_entries, verify
from cleanroom.errors import InvalidInput
from cleanroom.ledger import Ledger, Reservation

log = logging.getLogger("cleanroom.party")

RECOVERY = "refusing to serve; see docs/operations.md, 'When the ledger and the audit log disagree'"


class StateMismatch(InvalidInput):
    """The party's ledger, audit log or reveal record disagree (or one is missing or broken)."""


@dataclass(frozen=True)
class StateFiles:
    """The durable state a party node cross-checks at start-up."""

    ledger: Path
    audit_log: Path | None
    reveals: Path


def append_charge(
    audit: Any, reservation: Reservation, requester: str | None, recovered: bool = False
) -> Any:
    """Append the audit entry of one ledger reservation: event "charge", outcome "reserved"."""
    detail: dict[str, Any] | None = None
    if recovered:
        detail = {"recovered": "ledger entry without its audit entry (crash between the two writes)"}
    return audit.append(
        CHARGE,
        RESERVED,
        job_id=reservation.job_id,
        round=reservation.detail.get("round"),
        requester=requester,
        plan_hash=reservation.plan_hash,
        release_id=reservation.release_id,
        rho=reservation.rho_text,
        detail=detail,
    )


def check_state(files: StateFiles, total_rho: float, requester: str | None = None) -> list[Reservation]:
    """Raise StateMismatch unless ledger, audit log and reveal record agree; returns the ledger's entries.

    Opens nothing for writing except to append a recovered charge entry; a missing ledger is not created.
    """
    try:
        entries = Ledger(files.ledger, total_rho).entries() if files.ledger.exists() else []
    except sqlite3.DatabaseError as error:
        raise StateMismatch(f"ledger {files.ledger} cannot be read ({error}); {RECOVERY}") from None
    if files.audit_log is None:
        if entries:
            log.warning("no audit log configured: ledger %s cannot be cross-checked", files.ledger)
        return entries
    charges = audit_charges(files.audit_log, files.ledger, bool(entries))
    _check_ledger_holds_charges(files, entries, charges)
    unaudited = [e for e in entries if e.release_id not in charges]
    if unaudited and unaudited != entries[-1:]:
        raise StateMismatch(
            f"ledger {files.ledger} has {len(unaudited)} charges without an audit entry in {files.audit_log} "
            f"({_ids(e.release_id for e in unaudited)}): the audit log was truncated or replaced; {RECOVERY}"
        )
    if unaudited:
        append_charge(AuditLog(files.audit_log), unaudited[0], requester, recovered=True)
        log.warning(
            "ledger %s: the audit entry of the last charge %s was missing (crash?); appended as recovered",
            files.ledger,
            bounded_text(repr(unaudited[0].release_id), 80),
        )
    if entries and not files.reveals.exists():
        raise StateMismatch(
            f"reveal record {files.reveals} is missing but ledger {files.ledger} records {len(entries)} "
            f"charges: revealed share kinds are lost; {RECOVERY}"
        )
    return entries


def audit_charges(path: Path, ledger: Path, ledger_in_use: bool) -> dict[str, str]:
    """Release id -> rho text of every "charge" entry of a verified audit log ({} if there is no log)."""
    if not path.exists():
        if ledger_in_use:
            raise StateMismatch(
                f"audit log {path} is missing but ledger {ledger} records charges; {RECOVERY}"
            )
        return {}
    result = verify(path)
    if not result.ok:
        raise StateMismatch(
            f"audit log {path} fails verification at line {result.first_bad_line}: {result.problem}; "
            f"{RECOVERY}"
        )
    if result.entries and not head_path(path).exists():
        log.warning("audit log %s has no head file: truncation of its tail cannot be detected", path)
    charges: dict[str, str] = {}
    for entry in read_entries(path):
        if entry.get("event") != CHARGE or entry.get("outcome") != RESERVED:
            continue
        release_id, rho = str(entry.get("release_id")), str(entry.get("rho"))
        if charges.setdefault(release_id, rho) != rho:
            raise StateMismatch(
                f"audit log {path} charges release {bounded_text(repr(release_id), 80)} twice with different "
                f"rho ({charges[release_id]} and {rho}); {RECOVERY}"
            )
    return charges


def _check_ledger_holds_charges(
    files: StateFiles, entries: list[Reservation], charges: Mapping[str, str]
) -> None:
    in_ledger = {e.release_id: e.rho_text for e in entries}
    lost = [r for r in charges if r not in in_ledger]
    changed = [r for r in charges if r in in_ledger and in_ledger[r] != charges[r]]
    if lost or changed:
        what = (
            f"{len(lost)} missing ({_ids(lost)})"
            if lost
            else f"{len(changed)} with another rho ({_ids(changed)})"
        )
        raise StateMismatch(
            f"ledger {files.ledger} has {len(entries)} charges but audit log {files.audit_log} records "
            f"{len(charges)}, {what}: the ledger was deleted, replaced or rolled back; {RECOVERY}"
        )


def _ids(release_ids: Iterable[str], shown: int = 3) -> str:
    ids = list(release_ids)
    text = ", ".join(bounded_text(repr(r), 80) for r in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
