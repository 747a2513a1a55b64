"""The vertical protocol's messages: frozen dataclasses of bytes/int/str fields, mapped 1:1 to protobuf.

Every party-to-party payload (PSI list with the Paillier public key, encrypted list, aggregated ciphertexts)
carries an Ed25519 signature by the sender's identity key over the session id and a hash of the payload
(`signed_fields`), so the coordinator, which relays them, can neither forge nor replay one in another
session. The alignment map and the round request come from the coordinator and are checked by the party.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cleanroom.domain import Clique
from cleanroom.errors import InvalidInput, ProtocolAbort
from cleanroom.secagg.math import clique_fields, encode_fields

SETUP_TAG = "cleanroom/vertical-setup/v1"
ROUND_TAG = "cleanroom/vertical-round/v1"


def setup_sid(collaboration_id: str, plan_hash: str, job_id: str) -> bytes:
    """The job's setup session: binds every PSI and encrypted-list message to one plan and job."""
    return hashlib.sha256(encode_fields(SETUP_TAG, collaboration_id, plan_hash, job_id)).digest()


def signed_fields(kind: str, sid: bytes, sender: str, *parts: bytes | int) -> bytes:
    digest = hashlib.sha256(encode_fields(*parts)).digest()
    return encode_fields(f"cleanroom/vertical/{kind}/v1", sid, sender, digest)


def sign(key: Ed25519PrivateKey, kind: str, sid: bytes, sender: str, *parts: bytes | int) -> bytes:
    return key.sign(signed_fields(kind, sid, sender, *parts))


def verify(
    key: Ed25519PublicKey, signature: bytes, kind: str, sid: bytes, sender: str, *parts: bytes | int
) -> None:
    try:
        key.verify(signature, signed_fields(kind, sid, sender, *parts))
    except InvalidSignature:
        raise ProtocolAbort(
            f"{kind} of party {sender}: signature does not verify (forged, altered or from another session)"
        ) from None


@dataclass(frozen=True)
class VerticalRoundRequest:
    """One vertical measurement round: the cliques (over the joint schema) and each party's noise variance."""

    job_id: str
    release_id: str
    round: int
    cliques: tuple[Clique, ...]
    sigma_party2: Fraction
    statistic: str = ""  # unused: lets the party node's ledger helpers treat it like a RoundRequest

    def __post_init__(self) -> None:
        if not self.cliques:
            raise InvalidInput(f"vertical round {self.round}: no cliques to measure")
        if self.sigma_party2 <= 0:
            raise InvalidInput(f"vertical round {self.round}: sigma_party2 ({self.sigma_party2}) must be > 0")
        if not self.release_id or not self.job_id:
            raise InvalidInput(f"vertical round {self.round}: job_id and release_id must not be empty")

    def digest(self) -> bytes:
        cliques = clique_fields(self.cliques)
        fields = encode_fields(
            ROUND_TAG, self.job_id, self.release_id, self.round, *cliques,
            str(self.sigma_party2.numerator), str(self.sigma_party2.denominator),
        )  # fmt: skip
        return hashlib.sha256(fields).digest()


@dataclass(frozen=True)
class SetupReply:
    """A party's Paillier public key and PSI list (H(k)^a, padded, shuffled), signed."""

    sid: bytes
    sender: str
    public_key: bytes
    blinded: bytes
    signature: bytes


@dataclass(frozen=True)
class BlindReply:
    """The other party's PSI list raised to this party's secret: for the coordinator only."""

    sid: bytes
    sender: str
    doubly_blinded: bytes


@dataclass(frozen=True)
class EncryptedList:
    """A party's encrypted entry vectors (`n_ciphertexts` per entry, ciphertext-major), signed.

    `positions` (uint32 per PSI entry: where the entry sits in the encrypted list) is for the coordinator
    only and not signed; the other party gets the list with empty positions.
    """

    sid: bytes
    sender: str
    entries: int
    n_ciphertexts: int
    data: bytes
    signature: bytes
    positions: bytes = b""


@dataclass(frozen=True)
class AggregateReply:
    """One round's aggregated, noised ciphertexts under the other party's key, signed."""

    sid: bytes
    sender: str
    data: bytes
    signature: bytes


@dataclass(frozen=True)
class ReleaseReply:
    """The decryptor's released tables (its own noise added): int64 little-endian, cliques in round order."""

    sid: bytes
    sender: str
    vector: bytes
