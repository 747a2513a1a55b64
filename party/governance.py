"""Governance enforced at the party node: who may call it (plan membership, `run_jobs`, the plan's
coordinator; `read_audit_log` for reading the audit log), refusals written to the party's audit log (rate
limited per caller), and retention of delivered outputs.

The party decides from its own plan and its own certificate checks; nothing here trusts the coordinator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cleanroom.audit import REFUSED, SUPPRESSED_EVENT, bounded_text, utc_now
from cleanroom.errors import InvalidInput, PermissionDenied
from transport.auth import Authorizer, Peer, check_claim, peer_from_context, require_coordinator

log = logging.getLogger("cleanroom.party")

# audit `event` of a refused call, by RPC (the node's own entries use the same names)
CALL_EVENTS = {
    "Hello": "start_job",
    "AdvertiseKeys": "measure",
    "ShareKeys": "measure",
    "MaskedInput": "measure",
    "ConsistencyCheck": "measure",
    "Unmask": "measure",
    "DeliverResults": "receive_results",
    "Budget": "budget",
    "ReadAuditLog": "read_audit_log",
}
REFUSAL_BURST = 20  # refusal entries a caller may cause at once ...
REFUSAL_REFILL_S = 30.0  # ... then one more per this many seconds
SUMMARY_WINDOW_S = 60.0  # refusals beyond that are counted, one summary entry per caller per window


def require_job_runner(plan: Any, peer: Peer) -> None:
    """The caller's certificate identity must be a member of the plan holding `run_jobs`."""
    member = next((m for m in plan.members if m.id == peer.node_id), None)
    if member is None:
        raise PermissionDenied(
            f"caller {peer.role}/{peer.node_id} is not a member of plan {plan.hash}; refused"
        )
    if "run_jobs" not in member.abilities:
        raise PermissionDenied(
            f"member {peer.node_id!r} lacks the run_jobs ability under plan {plan.hash}; refused"
        )


def require_audit_reader(plan: Any, peer: Peer) -> None:
    """The caller's certificate must be that of a plan member holding `read_audit_log` (any role)."""
    member = next((m for m in plan.members if m.id == peer.node_id), None)
    if member is None:
        raise PermissionDenied(
            f"caller {peer.role}/{peer.node_id} is not a member of plan {plan.hash}; refused"
        )
    if member.cert_sha256 and member.cert_sha256.lower() != peer.cert_sha256:
        raise PermissionDenied(
            f"member {peer.node_id!r} certificate fingerprint {peer.cert_sha256[:16]}... differs from "
            f"the one in plan {plan.hash}; refused"
        )
    if "read_audit_log" not in member.abilities:
        raise PermissionDenied(
            f"member {peer.node_id!r} lacks the read_audit_log ability under plan {plan.hash}; refused"
        )


@dataclass(frozen=True)
class PlanAuthorizer(Authorizer):
    """The plan's checks on every call, each refusal appended to the audit log (with the ledger's balance)."""

    plan: Any = None
    audit: Any = None  # cleanroom.audit.AuditLog, or None
    ledger: Any = None  # for rho_remaining in refusal entries

    def authorize(self, context: Any, claimed_id: str = "", what: str = "call") -> Peer:
        peer: Peer | None = None
        try:
            peer = peer_from_context(context)
            check_claim(peer, claimed_id, what)
            require_job_runner(self.plan, peer)
            require_coordinator(peer, self.coordinator_id, self.pinned_sha256)
        except PermissionDenied as error:
            self.record_refusal(peer, what, str(error))
            raise
        return peer

    def record_refusal(self, peer: Peer | None, what: str, reason: str) -> None:
        """Audit the refusal (unless the caller is over its rate limit) and log it locally."""
        entry: Any = True
        if self.audit is not None:
            remaining = float(self.ledger.remaining()) if self.ledger is not None else None
            entry = self.audit.append(
                CALL_EVENTS.get(what, what),
                "refused",
                requester=f"{peer.role}/{peer.node_id}" if peer is not None else "(no valid certificate)",
                plan_hash=self.plan.hash,
                rho_remaining=remaining,
                detail=f"{what}: {reason}",
            )
        if entry is not None:  # None: suppressed by the rate limit, counted in a summary entry
            log.warning("%s refused: %s", what, bounded_text(reason))


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: dict[str, int] = field(default_factory=dict)  # event -> refusals not logged singly
    since: float | None = None  # clock time of the first suppressed refusal of the current window
    first_time: str = ""


class RateLimitedAudit:
    """The node's audit log, with refusal entries rate-limited per caller (token bucket per requester).

    Each requester (certificate identity) may cause `burst` refusal entries, then one more every `refill_s`
    seconds. A refusal over the limit is still refused, but not written on its own: it is counted, and once
    per `window_s` (at the next append after the window closes, or at `flush`) one "refusals_suppressed"
    entry records how many of each kind there were. Every other entry passes straight through.
    """

    def __init__(
        self,
        audit: Any,
        burst: int = REFUSAL_BURST,
        refill_s: float = REFUSAL_REFILL_S,
        window_s: float = SUMMARY_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or refill_s <= 0 or window_s <= 0:
            raise InvalidInput(
                f"refusal rate limit: burst ({burst}) must be >= 1, refill_s ({refill_s}) and window_s "
                f"({window_s}) > 0"
            )
        self.audit, self.burst, self.refill_s, self.window_s = audit, burst, refill_s, window_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.audit, name)  # path, head_path, ...

    def append(self, event: str, outcome: str, **fields: Any) -> dict[str, Any] | None:
        """Append like AuditLog.append; returns None for a refusal suppressed by the rate limit."""
        with self._lock:
            now = self._clock()
            self._summarise(now, only_due=True)
            if outcome == REFUSED and not self._take(str(fields.get("requester")), event, now):
                return None
            return self.audit.append(event, outcome, **fields)  # type: ignore[no-any-return]

    def flush(self) -> None:
        """Write the summary of every caller with suppressed refusals now (e.g. at shutdown)."""
        with self._lock:
            self._summarise(self._clock(), only_due=False)

    def _take(self, requester: str, event: str, now: float) -> bool:
        bucket = self._buckets.setdefault(requester, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) / self.refill_s)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        if bucket.since is None:
            bucket.since, bucket.first_time = now, utc_now().isoformat(timespec="seconds")
        bucket.suppressed[event] = bucket.suppressed.get(event, 0) + 1
        return False

    def _summarise(self, now: float, only_due: bool) -> None:
        for requester, bucket in self._buckets.items():
            if bucket.since is None or (only_due and now - bucket.since < self.window_s):
                continue
            count = sum(bucket.suppressed.values())
            self.audit.append(
                SUPPRESSED_EVENT,
                REFUSED,
                requester=requester,
                detail={
                    "suppressed": count,
                    "events": dict(bucket.suppressed),
                    "since": bucket.first_time,
                    "message": f"{count} refusals suppressed (over {self.burst} at once, then one per "
                    f"{self.refill_s:g} s)",
                },
            )
            bucket.suppressed, bucket.since = {}, None
