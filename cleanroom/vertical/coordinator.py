"""The coordinator's pure part of a vertical job: match the doubly-blinded lists, build the alignment maps,
and put each round's released tables back in request order.

What it learns: the list sizes (public bounds), which entry of one list matches which entry of the other
(positions in secretly shuffled lists: no key, no record) and so the intersection size, and the released
noisy tables. The map it gives a party is a uniformly random injection whatever the matches are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cleanroom.domain import Clique, Domain
from cleanroom.errors import ProtocolAbort
from cleanroom.vertical import psi
from cleanroom.vertical.layout import RoundLayout
from cleanroom.vertical.messages import BlindReply, EncryptedList
from cleanroom.vertical.spec import VerticalSpec


@dataclass(frozen=True)
class Alignment:
    maps: dict[str, npt.NDArray[np.uint32]]  # party -> its map into the other's encrypted list
    intersection: int


def positions_of(listing: EncryptedList, count: int) -> list[int]:
    if len(listing.positions) != 4 * count:
        raise ProtocolAbort(f"encrypted list of {listing.sender}: {count} positions expected")
    values = np.frombuffer(listing.positions, dtype="<u4").astype(np.int64)
    if values.size and (values.max() >= listing.entries or np.unique(values).size != values.size):
        raise ProtocolAbort(f"encrypted list of {listing.sender}: positions are not distinct entries")
    return [int(v) for v in values]


def align(spec: VerticalSpec, blinds: dict[str, BlindReply], lists: dict[str, EncryptedList]) -> Alignment:
    """`blinds[P]` is the *other* party's list raised by P (so it is in the other's order)."""
    first, second = spec.parties
    sizes = (spec.max_rows[first], spec.max_rows[second])
    pairs = psi.match(blinds[second].doubly_blinded, blinds[first].doubly_blinded, sizes)
    positions = {p: positions_of(lists[p], spec.max_rows[p]) for p in spec.parties}
    forward = dict(pairs)
    backward = {j: i for i, j in pairs}
    maps = {
        first: psi.alignment_map(forward, sizes[0], positions[second], lists[second].entries),
        second: psi.alignment_map(backward, sizes[1], positions[first], lists[first].entries),
    }
    return Alignment(maps, len(pairs))


def peer_copy(listing: EncryptedList) -> EncryptedList:
    """What the other party receives: the signed list without the positions (those stay here)."""
    return EncryptedList(
        listing.sid, listing.sender, listing.entries, listing.n_ciphertexts, listing.data, listing.signature
    )


def assemble(
    spec: VerticalSpec, domain: Domain, cliques: tuple[Clique, ...], released: dict[str, np.ndarray]
) -> list[np.ndarray]:
    """Tables in request order from each party's released vector (its cliques in round order)."""
    layout = RoundLayout(spec, domain, cliques)
    tables: dict[int, np.ndarray] = {}
    for party in spec.parties:
        vector = np.asarray(released[party], dtype=np.int64)
        indices = layout.released_by(party)
        expected = sum(layout.cells(i) for i in indices)
        if vector.shape != (expected,):
            raise ProtocolAbort(f"party {party} released {vector.size} cells, expected {expected}")
        offset = 0
        for i in indices:
            size = layout.cells(i)
            tables[i] = vector[offset : offset + size].reshape(domain.project(cliques[i]).shape)
            offset += size
    return [tables[i] for i in range(len(cliques))]
