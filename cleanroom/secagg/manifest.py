"""The public collaboration manifest of secure aggregation and the per-round session id.

The manifest is agreed by every party: member ids (in a fixed order that gives each its Shamir point), their
Ed25519 identity public keys, the threshold t, `min_parties` and the schema hash. Threshold choice: t must be
a strict majority (t > n/2) so a lying coordinator cannot collect two disjoint quorums that see different
survivor lists; the default is floor(n/2) + 1, the largest threshold that still tolerates the most dropouts.
Tolerating c parties that collude with a lying coordinator needs t > (n + c)/2 (see docs/secagg.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom.errors import InvalidInput, PermissionDenied
from cleanroom.secagg.math import encode_fields

SID_TAG = "cleanroom-secagg/v2/sid"


def session_id(collaboration_id: str, round_number: int, plan_hash: str, request_digest: bytes) -> bytes:
    """sid = SHA-256(tag | collaboration_id | round | plan_hash | request digest), length-prefixed (32 bytes).

    The request digest (a hash of everything the round asks for: release id, cliques or statistic, noise)
    makes the sid, and so every signature, key derivation and AEAD tag of the session, specific to one
    request: a party given a different request computes another sid and refuses the others' adverts.
    """
    if len(request_digest) != 32:
        raise InvalidInput(f"request_digest must be 32 bytes, got {len(request_digest)}")
    if not collaboration_id:
        raise InvalidInput("collaboration_id must not be empty")
    if not 0 <= round_number < 2**63:
        raise InvalidInput(f"round ({round_number}) must be in [0, 2^63)")
    if not plan_hash:
        raise InvalidInput("plan_hash must not be empty")
    fields = encode_fields(SID_TAG, collaboration_id, round_number, plan_hash, request_digest)
    return hashlib.sha256(fields).digest()


def default_threshold(n_parties: int) -> int:
    """floor(n/2) + 1: the smallest strict majority."""
    return n_parties // 2 + 1


def required_threshold(n_parties: int, colluders: int) -> int:
    """Smallest t that keeps inputs hidden from a lying coordinator helped by `colluders` parties.

    Needs t > (n + c)/2 (no two quorums that overlap only in colluders) and t > c (colluders alone cannot
    reconstruct an honest party's secrets).
    """
    if not 0 <= colluders < n_parties:
        raise InvalidInput(f"colluders ({colluders}) must be in [0, {n_parties - 1}]")
    return max((n_parties + colluders) // 2 + 1, colluders + 1)


@dataclass(frozen=True)
class SecAggManifest:
    """Public, agreed parameters of a collaboration's secure aggregation (threshold 0 = default)."""

    collaboration_id: str
    parties: tuple[str, ...]
    identity_keys: tuple[Ed25519PublicKey, ...]
    min_parties: int
    schema_hash: str
    threshold: int = 0
    coordinator_id: str = "coordinator"

    def __post_init__(self) -> None:
        n = len(self.parties)
        if not self.collaboration_id:
            raise InvalidInput("collaboration_id must not be empty")
        if n < 2:
            raise InvalidInput(f"a manifest needs at least 2 parties, got {n}")
        if any(not isinstance(p, str) or not p for p in self.parties) or len(set(self.parties)) != n:
            raise InvalidInput(f"party ids must be distinct non-empty strings: {self.parties}")
        if self.coordinator_id in self.parties:
            raise InvalidInput(f"coordinator_id ({self.coordinator_id}) must not be a party id")
        if len(self.identity_keys) != n:
            raise InvalidInput(f"identity_keys ({len(self.identity_keys)}) must match parties ({n})")
        raw_keys = [key.public_bytes_raw() for key in self.identity_keys]
        if len(set(raw_keys)) != n:
            raise InvalidInput("identity keys must be distinct")
        if self.threshold == 0:
            object.__setattr__(self, "threshold", default_threshold(n))
        if not n / 2 < self.threshold <= n:
            raise InvalidInput(f"threshold ({self.threshold}) must be in (n/2, n] = ({n / 2}, {n}]")
        if not 2 <= self.min_parties <= n:
            raise InvalidInput(f"min_parties ({self.min_parties}) must be in [2, {n}]")
        if not self.schema_hash:
            raise InvalidInput("schema_hash must not be empty")

    @property
    def n(self) -> int:
        return len(self.parties)

    @property
    def quorum(self) -> int:
        """Fewest parties a stage may end with: max(threshold, min_parties)."""
        return max(self.threshold, self.min_parties)

    @property
    def max_colluders(self) -> int:
        """Largest c with 2t > n + c and t > c (parties that may collude with a lying coordinator)."""
        return max(0, min(2 * self.threshold - self.n - 1, self.threshold - 1))

    def index(self, party: str) -> int:
        try:
            return self.parties.index(party)
        except ValueError:
            raise PermissionDenied(f"party {party!r} is not a member of {self.collaboration_id}") from None

    def share_point(self, party: str) -> int:
        """The Shamir x coordinate of a party: its manifest index + 1."""
        return self.index(party) + 1

    def identity_key(self, party: str) -> Ed25519PublicKey:
        return self.identity_keys[self.index(party)]

    def is_member(self, party: str) -> bool:
        return party in self.parties
