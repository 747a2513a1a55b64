"""Diffie-Hellman private set intersection with the coordinator as the only matcher, and the alignment maps.

Group: the prime-order subgroup of Ed25519 through libsodium (PyNaCl's `crypto_core_ed25519_*` and
`crypto_scalarmult_ed25519_noclamp`; PyNaCl exposes no ristretto255). A key k is hashed to the group as
H(k) = E(h[:32]) + E(h[32:]) with h = SHA-512 over the domain tag, the collaboration id and the normalised
key, and E libsodium's Elligator 2 map, which clears the cofactor (the sum of two maps is the usual
random-oracle encoding). Each party draws a fresh secret scalar per job.

1. Party P sends its list B_P = [H(k)^{a_P}] over its records, padded with uniformly random group elements to
   the public bound `max_rows[P]` and shuffled (its own secret order).
2. Each party raises the *other's* list to its secret and returns the doubly-blinded list to the coordinator
   only. H(k)^{ab} is the same for the same key at both parties; nothing else matches (except with
   negligible probability).
3. The coordinator matches (`match`) and gives each party P a map from P's list entries to positions in the
   other party Q's encrypted list (`alignment_maps`): a matched entry gets its match's position, every other
   entry a distinct dummy position of Q, chosen uniformly at random. P checks the map (`check_map`):
   one position per entry, all distinct, all in range. Distinct positions are what bounds a record's
   influence: a map sending many of P's records to one of Q's entries would count that entry many times.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.bindings as sodium
import numpy as np
import numpy.typing as npt

from cleanroom.errors import InvalidInput, PermissionDenied, ProtocolAbort
from cleanroom.secagg.math import encode_fields

POINT_BYTES = 32
HASH_TAG = "cleanroom/vertical-psi/v1"


def hash_to_group(collaboration_id: str, key: str) -> bytes:
    digest = hashlib.sha512(encode_fields(HASH_TAG, collaboration_id, key)).digest()
    first = sodium.crypto_core_ed25519_from_uniform(digest[:32])
    second = sodium.crypto_core_ed25519_from_uniform(digest[32:])
    return bytes(sodium.crypto_core_ed25519_add(first, second))


def random_scalar() -> bytes:
    """A uniform non-zero scalar mod the group order (64 random bytes reduced)."""
    while True:
        scalar = bytes(sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64)))
        if any(scalar):
            return scalar


def random_element() -> bytes:
    """A uniform group element: what a blinded key looks like to anyone without the secret."""
    return bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(random_scalar()))


def raise_to(scalar: bytes, point: bytes, what: str) -> bytes:
    """point^scalar; refuses an encoding that is not a point of the prime-order subgroup."""
    if len(point) != POINT_BYTES or not sodium.crypto_core_ed25519_is_valid_point(point):
        raise ProtocolAbort(f"{what}: an entry is not a valid group element")
    try:
        return bytes(sodium.crypto_scalarmult_ed25519_noclamp(scalar, point))
    except RuntimeError:
        raise ProtocolAbort(f"{what}: an entry is not a valid group element") from None


def split_points(data: bytes, count: int, what: str) -> list[bytes]:
    if len(data) != POINT_BYTES * count:
        raise ProtocolAbort(f"{what}: {len(data)} bytes do not hold {count} group elements")
    return [data[i : i + POINT_BYTES] for i in range(0, len(data), POINT_BYTES)]


def secret_permutation(size: int) -> list[int]:
    """A uniformly random permutation drawn from the OS generator (Fisher-Yates with `secrets`)."""
    order = list(range(size))
    for i in range(size - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


@dataclass(frozen=True)
class BlindedList:
    """A party's PSI list: `points[i]` is entry i; `record_of[i]` the record behind it, or -1 (padding)."""

    points: tuple[bytes, ...]
    record_of: tuple[int, ...]

    def to_bytes(self) -> bytes:
        return b"".join(self.points)


def blind_keys(collaboration_id: str, keys: Sequence[str], bound: int, secret: bytes) -> BlindedList:
    """H(k)^secret per record (normalised keys; "" joins nothing), padded to `bound`, shuffled."""
    if len(keys) > bound:
        raise InvalidInput(f"{len(keys)} records exceed the plan's max_rows ({bound})")
    entries: list[tuple[bytes, int]] = []
    for record, key in enumerate(keys):
        if key:
            entries.append((raise_to(secret, hash_to_group(collaboration_id, key), "own key"), record))
    entries += [(random_element(), -1) for _ in range(bound - len(entries))]
    order = secret_permutation(bound)
    return BlindedList(tuple(entries[i][0] for i in order), tuple(entries[i][1] for i in order))


def raise_list(data: bytes, count: int, secret: bytes, what: str) -> bytes:
    """The other's list raised to our secret (doubly blinded), in its order: for the coordinator only."""
    return b"".join(raise_to(secret, point, what) for point in split_points(data, count, what))


def match(first: bytes, second: bytes, sizes: tuple[int, int]) -> list[tuple[int, int]]:
    """Coordinator: pairs (i, j) with first[i] == second[j] (doubly-blinded lists, each in its owner's order).

    A value repeated within one list (a party's duplicate key, or an attack) matches at most once.
    """
    index: dict[bytes, int] = {}
    for i, point in enumerate(split_points(first, sizes[0], "first doubly-blinded list")):
        index.setdefault(point, i)
    pairs, used = [], set()
    for j, point in enumerate(split_points(second, sizes[1], "second doubly-blinded list")):
        found = index.get(point)
        if found is not None and found not in used:
            used.add(found)
            pairs.append((found, j))
    return pairs


def alignment_map(
    matched: dict[int, int], size: int, positions: Sequence[int], list_size: int
) -> npt.NDArray[np.uint32]:
    """Coordinator: for each of P's `size` PSI entries, a distinct position in Q's encrypted list.

    `matched` maps P's entry to Q's PSI entry, `positions[j]` is where Q put its PSI entry j in its encrypted
    list (the rest of Q's list are its dummies). Unmatched entries get distinct dummies, uniformly at random.
    """
    taken = set(int(p) for p in positions)
    dummies = [p for p in range(list_size) if p not in taken]
    order = secret_permutation(len(dummies))
    if size - len(matched) > len(dummies):
        raise ProtocolAbort("alignment: the other party's list has too few dummies")
    out = np.zeros(size, dtype=np.uint32)
    spare = iter(order)
    for i in range(size):
        out[i] = positions[matched[i]] if i in matched else dummies[next(spare)]
    return out


def check_map(mapping: npt.NDArray[np.integer], size: int, list_size: int, where: str) -> None:
    """A party's check of its alignment map: one position per entry, distinct, inside the other's list."""
    if mapping.shape != (size,):
        raise PermissionDenied(f"{where}: the alignment map has {mapping.size} positions, expected {size}")
    if size and (int(mapping.max()) >= list_size or int(mapping.min()) < 0):
        raise PermissionDenied(f"{where}: the alignment map points outside the other party's list")
    if np.unique(mapping).size != size:
        raise PermissionDenied(
            f"{where}: the alignment map repeats a position (several records on one entry); refused"
        )
