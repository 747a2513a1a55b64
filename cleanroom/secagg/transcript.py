"""The exact bytes that are signed or authenticated in a session; every one starts with a tag and the sid.

Shared by party and coordinator so both sides check the same transcripts.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom.secagg.math import encode_fields

ADVERT_TAG = "cleanroom-secagg/v1/advertise-keys"
SURVIVORS_TAG = "cleanroom-secagg/v1/survivors"
SPARSE_SURVIVORS_TAG = "cleanroom-secagg/v1/survivors-sparse-graph"
SHARES_TAG = "cleanroom-secagg/v1/encrypted-shares"


def advert_transcript(sid: bytes, sender: str, enc_public: bytes, mask_public: bytes) -> bytes:
    return encode_fields(ADVERT_TAG, sid, sender, enc_public, mask_public)


def survivors_transcript(sid: bytes, survivors: Sequence[str], graph_digest: bytes = b"") -> bytes:
    """What a party signs in ConsistencyCheck; with a sparse graph it also names the graph (its digest)."""
    if graph_digest:
        return encode_fields(SPARSE_SURVIVORS_TAG, sid, graph_digest, len(survivors), *survivors)
    return encode_fields(SURVIVORS_TAG, sid, len(survivors), *survivors)


def shares_associated_data(sid: bytes, sender: str, recipient: str) -> bytes:
    """AEAD associated data of the shares `sender` sends `recipient` (direction-bound, sid-bound)."""
    return encode_fields(SHARES_TAG, sid, sender, recipient)


def signature_valid(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
