"""The public collaboration manifest of secure aggregation and the per-round session id.

The manifest is agreed by every party: member ids (in a fixed order that gives each its Shamir point), their
Ed25519 identity public keys, the threshold t, `min_parties`, the schema hash and the masking graph's degree.
Threshold choice: t must be a strict majority (t > n/2) so a lying coordinator cannot collect two disjoint
quorums that see different survivor lists; the default is floor(n/2) + 1, the largest threshold that still
tolerates the most dropouts. Tolerating c parties that collude with a lying coordinator needs t > (n + c)/2
(see docs/secagg.md). With a sparse masking graph of degree k (SecAgg+) t stays the quorum of every stage and
of the signatures on the survivor list, and secrets are shared within each closed neighbourhood (k + 1
parties) with the neighbourhood threshold t_k; `sparse_degree` picks k for given dropouts and colluders.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom.errors import InvalidInput, PermissionDenied
from cleanroom.secagg.graph import MaskingGraph, masking_graph
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


def required_neighbour_threshold(degree: int, colluders: int) -> int:
    """t_k for a sparse graph of degree k: a strict majority of the closed neighbourhood (k + 1 parties)
    that also exceeds the colluders, `required_threshold(k + 1, c)`."""
    return required_threshold(degree + 1, colluders)


def required_degree(dropouts: int, colluders: int) -> int:
    """Smallest k for which a coordinator with c = `colluders` parties, free to lose m = `dropouts` parties,
    learns only the total of the honest survivors: c + max(2m, m + 1) (docs/secagg.md, sparse graph).

    m + c + 1 keeps the honest signers connected (H(k, n) has vertex connectivity k); 2m + c stops the
    isolation of one party u whose up to m honest neighbours' shares are withheld (u then does not sign, so
    at most m - 1 others may be missing) while its other neighbours are colluders or dropped.
    """
    return colluders + max(2 * dropouts, dropouts + 1)


def sparse_feasible(degree: int, dropouts: int, colluders: int) -> bool:
    """Whether an even degree k >= 2 keeps every guarantee for `dropouts` missing and `colluders` parties:
    k >= `required_degree`, c < t_k and t_k <= k + 1 - dropouts (every secret keeps t_k live holders)."""
    if degree < 2 or degree % 2 or degree < required_degree(dropouts, colluders):
        return False
    return required_neighbour_threshold(degree, colluders) <= degree + 1 - dropouts


def sparse_degree(n_parties: int, dropouts: int, colluders: int) -> int:
    """Default degree k of the masking graph, or 0 for the complete graph.

    k starts at the smallest even number >= log2(n) (SecAgg+'s k = O(log n)) and grows in steps of 2 until
    `sparse_feasible`; the graph is sparse only when k <= (n - 1)/2 (it removes at least half of the pairs),
    else complete. With dropouts <= 1 and no colluders that makes the sparse graph the default from n = 9.
    """
    if n_parties < 2 or dropouts < 0 or colluders < 0:
        raise InvalidInput(f"sparse_degree needs n >= 2 and dropouts, colluders >= 0, got {n_parties}, "
                           f"{dropouts}, {colluders}")  # fmt: skip
    degree = max(2, (n_parties - 1).bit_length())  # ceil(log2 n) for n >= 2
    degree += degree % 2
    while not sparse_feasible(degree, dropouts, colluders):
        degree += 2
    return degree if 2 * degree <= n_parties - 1 else 0


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
    neighbours: int = 0  # degree k of a sparse masking graph; 0 = complete graph
    neighbour_threshold: int = 0  # t_k of a sparse graph; 0 = required_neighbour_threshold(k, 0)

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
        self._check_graph()

    def _check_graph(self) -> None:
        n, k = self.n, self.neighbours
        if k == 0:
            if self.neighbour_threshold:
                raise InvalidInput("neighbour_threshold is only for a sparse graph (neighbours > 0)")
            return
        if not (2 <= k <= n - 2 and k % 2 == 0):
            raise InvalidInput(f"neighbours ({k}) must be 0 (complete graph) or even in [2, n - 2 = {n - 2}]")
        if self.neighbour_threshold == 0:
            object.__setattr__(self, "neighbour_threshold", required_neighbour_threshold(k, 0))
        t_k = self.neighbour_threshold
        if not (k + 1) / 2 < t_k <= k + 1:
            raise InvalidInput(
                f"neighbour_threshold ({t_k}) must be in ((k + 1)/2, k + 1] = ({(k + 1) / 2}, {k + 1}]"
            )
        if k < required_degree(self.missing_allowed, 0):
            raise InvalidInput(
                f"neighbours ({k}) must be >= {required_degree(self.missing_allowed, 0)} when n - quorum = "
                f"{self.missing_allowed} parties may be lost, or one party's input could be unmasked alone"
            )

    @property
    def n(self) -> int:
        return len(self.parties)

    @property
    def quorum(self) -> int:
        """Fewest parties a stage may end with: max(threshold, min_parties)."""
        return max(self.threshold, self.min_parties)

    @property
    def sparse(self) -> bool:
        return self.neighbours > 0

    @property
    def share_threshold(self) -> int:
        """Shares needed to reconstruct a party's secret: t_k for a sparse graph, t for the complete one."""
        return self.neighbour_threshold if self.sparse else self.threshold

    @property
    def missing_allowed(self) -> int:
        """Most parties a session may lose and go on: n - quorum."""
        return self.n - self.quorum

    @property
    def neighbour_quorum(self) -> int:
        """Fewest members of its closed neighbourhood a party accepts at each stage.

        Complete graph: the quorum. Sparse: max(t_k, k + 1 - (n - quorum)), since at most n - quorum parties
        may be missing anywhere; fewer means the coordinator hides neighbours that are there.
        """
        if not self.sparse:
            return self.quorum
        return max(self.neighbour_threshold, self.neighbours + 1 - self.missing_allowed)

    @property
    def max_colluders(self) -> int:
        """Largest c with 2t > n + c and t > c (parties that may collude with a lying coordinator).

        A sparse graph also needs c < t_k (colluding neighbours cannot reconstruct a secret) and
        k >= `required_degree(n - quorum, c)` (only the honest survivors' total is revealed).
        """
        bound = min(2 * self.threshold - self.n - 1, self.threshold - 1)
        if self.sparse:
            m = self.missing_allowed
            bound = min(bound, self.neighbour_threshold - 1, self.neighbours - required_degree(m, 0))
        return max(0, bound)

    def masking_graph(self, sid: bytes) -> MaskingGraph:
        """The session's masking graph (complete unless `neighbours` > 0), derived from sid and roster."""
        return masking_graph(sid, self.parties, self.neighbours)

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
