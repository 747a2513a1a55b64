"""Peer identity from the mutual-TLS auth context, and the checks every handler makes with it.

The identity is the `spiffe://cleanroom/<role>/<id>` URI SAN of the verified client certificate (gRPC has
already checked the chain against the collaboration CA). A message whose claimed sender differs from that
identity is refused with PERMISSION_DENIED; so is a caller other than the plan's coordinator, or one whose
certificate fingerprint differs from the one pinned in the plan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cleanroom.errors import InvalidInput, PermissionDenied
from transport.ca import identity_of


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a call, as proven by its certificate."""

    role: str
    node_id: str
    cert_sha256: str


def peer_from_context(context: Any) -> Peer:
    """The verified peer of a call (grpc.ServicerContext or grpc.aio.ServicerContext)."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise PermissionDenied("caller presented no client certificate")
    cert = x509.load_pem_x509_certificate(pems[0])
    try:
        role, node_id = identity_of(cert)
    except InvalidInput as error:
        raise PermissionDenied(f"caller certificate rejected: {error}") from None
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return Peer(role, node_id, digest)


def check_claim(peer: Peer, claimed_id: str, what: str) -> None:
    """Refuse a message claiming to come from someone other than the certificate's identity."""
    if claimed_id and claimed_id != peer.node_id:
        shown = repr(claimed_id[:128]) + (f"...({len(claimed_id)} chars)" if len(claimed_id) > 128 else "")
        raise PermissionDenied(
            f"{what}: message claims to be from {shown} but the certificate identifies {peer.node_id!r}"
        )


def require_coordinator(peer: Peer, coordinator_id: str, pinned_sha256: str | None) -> None:
    """Only the plan's coordinator (with the pinned certificate, if the plan pins one) may call a party."""
    if peer.role != "coordinator" or peer.node_id != coordinator_id:
        raise PermissionDenied(
            f"caller {peer.role}/{peer.node_id} is not the plan's coordinator {coordinator_id!r}"
        )
    if pinned_sha256 and pinned_sha256.lower() != peer.cert_sha256:
        raise PermissionDenied(
            f"coordinator {coordinator_id!r} certificate fingerprint {peer.cert_sha256[:16]}... "
            "differs from the one pinned in the plan"
        )


@dataclass(frozen=True)
class Authorizer:
    """What a party node accepts: calls from the plan's coordinator only, claiming no other identity."""

    coordinator_id: str
    pinned_sha256: str | None = None

    def authorize(self, context: Any, claimed_id: str = "", what: str = "call") -> Peer:
        peer = peer_from_context(context)
        check_claim(peer, claimed_id, what)
        require_coordinator(peer, self.coordinator_id, self.pinned_sha256)
        return peer
