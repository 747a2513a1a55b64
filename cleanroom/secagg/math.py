"""Cryptographic math for secure aggregation: uint64 vectors, key derivation, PRG, AEAD and Shamir sharing.

Every primitive comes from `cryptography` (X25519, Ed25519, HKDF-SHA256, ChaCha20, ChaCha20-Poly1305); only
Shamir secret sharing over the prime field GF(2^521 - 1) is implemented here, with plain integer arithmetic.

Vectors are int64 values carried as uint64 modulo 2^64: addition wraps exactly, so masks cancel bit for bit,
and a ChaCha20 keystream read as little-endian uint64 is an exactly uniform element of Z_{2^64} (no reduction,
hence no modulo bias).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

from cleanroom.errors import InvalidInput

KEY_BYTES = 32
SECRET_BYTES = 32
AEAD_NONCE_BYTES = 12
SHAMIR_PRIME = 2**521 - 1  # Mersenne prime, comfortably larger than any 256-bit secret
SHARE_X_BYTES = 2
SHARE_Y_BYTES = (SHAMIR_PRIME.bit_length() + 7) // 8
SHARE_BYTES = SHARE_X_BYTES + SHARE_Y_BYTES
_INT64_MAX = np.iinfo(np.int64).max

# Purposes bound into HKDF info fields (domain separation between the keys of one session).
PURPOSE_ENCRYPT = "cleanroom-secagg/v1/encrypt"
PURPOSE_PAIR_MASK = "cleanroom-secagg/v1/pair-mask"
PURPOSE_SELF_MASK = "cleanroom-secagg/v1/self-mask"


# ---------------------------------------------------------------- vectors


def encode_int64(values: NDArray[np.integer] | Sequence[int]) -> NDArray[np.uint64]:
    """Integer vector -> its two's-complement uint64 image (a fresh, writable 1-d array)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInput(f"secure-aggregation input must be a 1-d vector, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise InvalidInput(f"secure-aggregation input must have an integer dtype, got {array.dtype}")
    if array.dtype == np.uint64 and array.size and int(array.max()) > _INT64_MAX:
        raise InvalidInput("secure-aggregation input has uint64 values above the int64 range")
    return array.astype(np.int64).view(np.uint64).copy()


def decode_uint64(values: NDArray[np.uint64]) -> NDArray[np.int64]:
    """uint64 residues -> int64 (the representative in [-2^63, 2^63))."""
    return np.asarray(values, dtype=np.uint64).view(np.int64).copy()


def vector_to_bytes(values: NDArray[np.uint64]) -> bytes:
    return np.asarray(values, dtype="<u8").tobytes()


def vector_from_bytes(data: bytes, length: int, *, what: str) -> NDArray[np.uint64]:
    """Little-endian uint64 bytes -> writable array, refusing any other byte length."""
    if len(data) != 8 * length:
        raise InvalidInput(f"{what}: vector has {len(data)} bytes, expected {8 * length} ({length} cells)")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


# ---------------------------------------------------------------- canonical encodings and keys


def clique_fields(cliques: Sequence[Sequence[str]]) -> list[str | int]:
    """Cliques as `encode_fields` fields: their number, then each clique's length and attribute names."""
    fields: list[str | int] = [len(cliques)]
    for clique in cliques:
        fields += [len(clique), *clique]
    return fields


def encode_fields(*fields: bytes | str | int) -> bytes:
    """Unambiguous concatenation: each field is a 4-byte big-endian length followed by its bytes.

    Strings are UTF-8, integers 8-byte big-endian unsigned. Used for HKDF info, AEAD associated data and every
    signed transcript, so no two different field lists can produce the same bytes.
    """
    out = bytearray()
    for field in fields:
        if isinstance(field, bool):
            raise TypeError("encode_fields does not accept bool")
        if isinstance(field, int):
            data = field.to_bytes(8, "big")
        elif isinstance(field, str):
            data = field.encode("utf-8")
        else:
            data = bytes(field)
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def pair_key(shared_secret: bytes, sid: bytes, purpose: str, party_a: str, party_b: str) -> bytes:
    """Key for a pair of parties: salt = sid, info names the purpose and both ids in sorted order."""
    first, second = sorted((party_a, party_b))
    return hkdf_sha256(shared_secret, sid, encode_fields(purpose, first, second))


def self_mask_key(seed: bytes, sid: bytes, party: str) -> bytes:
    """ChaCha20 key of a party's self mask, derived from its seed b_u (sid-bound)."""
    return hkdf_sha256(seed, sid, encode_fields(PURPOSE_SELF_MASK, party))


def generate_x25519() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def x25519_public_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def x25519_private_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.private_bytes_raw()


def x25519_shared(private_key: X25519PrivateKey, peer_public: bytes, *, what: str) -> bytes:
    """Diffie-Hellman with a raw 32-byte peer key; a malformed or low-order key raises InvalidInput."""
    try:
        return private_key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise InvalidInput(f"{what}: unusable X25519 public key ({exc})") from exc


def x25519_from_private_bytes(data: bytes, *, what: str) -> X25519PrivateKey:
    try:
        return X25519PrivateKey.from_private_bytes(data)
    except ValueError as exc:
        raise InvalidInput(f"{what}: malformed X25519 private key ({exc})") from exc


# ---------------------------------------------------------------- PRG and AEAD


def prg_uint64(key: bytes, length: int) -> NDArray[np.uint64]:
    """ChaCha20 keystream (16-byte nonce: counter 0, nonce 0) read as `length` little-endian uint64 values.

    Each key is used for exactly one keystream, so the fixed nonce is never reused under a key.
    """
    if len(key) != KEY_BYTES:
        raise InvalidInput(f"PRG key must be {KEY_BYTES} bytes, got {len(key)}")
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    keystream = encryptor.update(bytes(8 * length))
    return np.frombuffer(keystream, dtype="<u8")


def add_prg(target: NDArray[np.uint64], key: bytes, sign: int) -> None:
    """target += sign * PRG(key) modulo 2^64, in place (sign is +1 or -1)."""
    stream = prg_uint64(key, target.shape[0])
    if sign > 0:
        np.add(target, stream, out=target)
    else:
        np.subtract(target, stream, out=target)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """ChaCha20-Poly1305 with a fresh random nonce, returned as nonce || ciphertext || tag."""
    nonce = os.urandom(AEAD_NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, blob: bytes, associated_data: bytes, *, what: str) -> bytes:
    if len(blob) < AEAD_NONCE_BYTES + 16:
        raise InvalidInput(f"{what}: ciphertext too short ({len(blob)} bytes)")
    try:
        return ChaCha20Poly1305(key).decrypt(
            blob[:AEAD_NONCE_BYTES], blob[AEAD_NONCE_BYTES:], associated_data
        )
    except InvalidTag as exc:
        raise InvalidInput(f"{what}: ciphertext failed authentication") from exc


# ---------------------------------------------------------------- Shamir sharing over GF(2^521 - 1)


@dataclass(frozen=True)
class Share:
    """One Shamir share: the point (x, y) of a random polynomial whose constant term is the secret."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not 1 <= self.x < 2 ** (8 * SHARE_X_BYTES):
            raise InvalidInput(f"share x ({self.x}) must be in [1, {2 ** (8 * SHARE_X_BYTES) - 1}]")
        if not 0 <= self.y < SHAMIR_PRIME:
            raise InvalidInput("share y must be in [0, 2^521 - 1)")


def split_secret(secret: bytes, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Shares of a 32-byte secret at the points `xs`; any `threshold` of them reconstruct it."""
    if len(secret) != SECRET_BYTES:
        raise InvalidInput(f"secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(xs):
        raise InvalidInput(f"threshold ({threshold}) must be in [1, {len(xs)}]")
    if len(set(xs)) != len(xs):
        raise InvalidInput("share points must be distinct")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(SHAMIR_PRIME) for _ in range(threshold - 1)]
    return [Share(x, _evaluate(coefficients, x)) for x in xs]


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % SHAMIR_PRIME
    return value


def _interpolate_at_zero(shares: Sequence[Share]) -> int:
    total = 0
    for i, share in enumerate(shares):
        numerator, denominator = 1, 1
        for j, other in enumerate(shares):
            if i != j:
                numerator = numerator * other.x % SHAMIR_PRIME
                denominator = denominator * (other.x - share.x) % SHAMIR_PRIME
        total += share.y * numerator * pow(denominator, -1, SHAMIR_PRIME)
    return total % SHAMIR_PRIME


def combine_shares(shares: Sequence[Share], threshold: int) -> bytes:
    """Reconstruct the 32-byte secret; with more than `threshold` shares, also check they agree.

    Raises InvalidInput for too few shares, repeated points, shares that are not on one polynomial of degree
    threshold - 1 (checked by interpolating the first and the last `threshold`), or a result over 256 bits.
    """
    if len(shares) < threshold:
        raise InvalidInput(f"{len(shares)} shares given, {threshold} needed to reconstruct")
    if len({share.x for share in shares}) != len(shares):
        raise InvalidInput("shares repeat an x coordinate")
    secret = _interpolate_at_zero(shares[:threshold])
    if len(shares) > threshold and _interpolate_at_zero(shares[-threshold:]) != secret:
        raise InvalidInput("shares are inconsistent (not on one polynomial of the agreed degree)")
    if secret >= 2 ** (8 * SECRET_BYTES):
        raise InvalidInput("shares reconstruct to a value outside the 256-bit secret range")
    return secret.to_bytes(SECRET_BYTES, "big")


def encode_share(share: Share) -> bytes:
    """Fixed-size encoding: 2-byte big-endian x, then 66-byte big-endian y."""
    return share.x.to_bytes(SHARE_X_BYTES, "big") + share.y.to_bytes(SHARE_Y_BYTES, "big")


def decode_share(data: bytes) -> Share:
    if len(data) != SHARE_BYTES:
        raise InvalidInput(f"share must be {SHARE_BYTES} bytes, got {len(data)}")
    return Share(int.from_bytes(data[:SHARE_X_BYTES], "big"), int.from_bytes(data[SHARE_X_BYTES:], "big"))
