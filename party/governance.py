"""Governance enforced at the party node: who may call it (plan membership, `run_jobs`, the plan's
coordinator; `read_audit_log` for reading the audit log), refusals written to the party's audit log, and
retention of delivered outputs.

The party decides from its own plan and its own certificate checks; nothing here trusts the coordinator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cleanroom.errors import PermissionDenied
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
        log.warning("%s refused: %s", what, reason)
        if self.audit is None:
            return
        remaining = float(self.ledger.remaining()) if self.ledger is not None else None
        self.audit.append(
            CALL_EVENTS.get(what, what),
            "refused",
            requester=f"{peer.role}/{peer.node_id}" if peer is not None else "(no valid certificate)",
            plan_hash=self.plan.hash,
            rho_remaining=remaining,
            detail=f"{what}: {reason}",
        )
