"""The masking graph of a session: who pairs masks and holds secret shares with whom.

Complete (Bonawitz et al.): every party with every other. Sparse (SecAgg+, Bell et al. CCS 2020): a k-regular
Harary graph, i.e. the circulant graph in which the party at position i of a ring is joined to the k/2
positions on either side, over a ring order that every party derives from public session data alone:
`seed = SHA-256(tag, sid, k, n, roster)` and the parties sorted by SHA-256(seed, party id). Nobody chooses the
graph, and every guarantee in docs/secagg.md holds for *every* ring order (the Harary graph H(k, n) has vertex
connectivity exactly k whatever the labelling), so a coordinator that could grind session ids to reorder the
ring gains nothing the documented bounds do not already allow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from cleanroom.errors import InvalidInput
from cleanroom.secagg.math import encode_fields

GRAPH_TAG = "cleanroom-secagg/v1/masking-graph"
GRAPH_DIGEST_TAG = "cleanroom-secagg/v1/masking-graph-digest"


@dataclass(frozen=True)
class MaskingGraph:
    """Open neighbourhoods of every party; `degree` is k (n - 1 when complete); `digest` names the graph."""

    parties: tuple[str, ...]
    degree: int
    ring: tuple[str, ...]
    neighbours: Mapping[str, frozenset[str]] = field(hash=False, compare=False)
    digest: bytes = b""

    @property
    def complete(self) -> bool:
        return self.degree >= len(self.parties) - 1

    def closed(self, party: str) -> frozenset[str]:
        """The party and its neighbours: the holders of its secret shares."""
        return self.neighbours[party] | {party}

    def adjacent(self, a: str, b: str) -> bool:
        return b in self.neighbours[a]


def ring_order(sid: bytes, parties: Sequence[str], degree: int) -> tuple[str, ...]:
    """The parties in the session's pseudo-random ring order (a pure function of public data)."""
    seed = hashlib.sha256(encode_fields(GRAPH_TAG, sid, degree, len(parties), *parties)).digest()
    return tuple(sorted(parties, key=lambda p: (hashlib.sha256(seed + encode_fields(p)).digest(), p)))


def masking_graph(sid: bytes, parties: Sequence[str], degree: int) -> MaskingGraph:
    """The session's graph: complete for degree 0 or >= n - 1, else the Harary graph H(degree, n).

    A sparse degree must be even and at least 2 (each party joins degree/2 ring positions on either side).
    """
    n = len(parties)
    if len(set(parties)) != n or n < 2:
        raise InvalidInput(f"a masking graph needs at least 2 distinct parties, got {tuple(parties)}")
    if degree == 0 or degree >= n - 1:
        everyone = frozenset(parties)
        neighbours = {p: everyone - {p} for p in parties}
        ring = tuple(parties)
        degree = n - 1
    else:
        if degree < 2 or degree % 2:
            raise InvalidInput(f"sparse masking degree ({degree}) must be even and >= 2")
        ring = ring_order(sid, parties, degree)
        position = {p: i for i, p in enumerate(ring)}
        offsets = [j for step in range(1, degree // 2 + 1) for j in (step, -step)]
        neighbours = {p: frozenset(ring[(position[p] + j) % n] for j in offsets) for p in parties}
    digest = hashlib.sha256(encode_fields(GRAPH_DIGEST_TAG, sid, degree, n, *ring)).digest()
    return MaskingGraph(tuple(parties), degree, ring, MappingProxyType(neighbours), digest)


def is_connected(graph: MaskingGraph, removed: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether the parties outside `removed` form one connected component (vacuously true if none)."""
    rest = [p for p in graph.parties if p not in removed]
    if not rest:
        return True
    seen, frontier = {rest[0]}, [rest[0]]
    while frontier:
        for q in graph.neighbours[frontier.pop()]:
            if q not in removed and q not in seen:
                seen.add(q)
                frontier.append(q)
    return len(seen) == len(rest)
