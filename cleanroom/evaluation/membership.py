"""Membership inference: the per-record member/non-member split, the DCR attack and the release gate.

**Split.** A party keeps a share of its records out of the synthesizer (*non-members*) to attack the
synthetic data with. Each record's side is decided by that record alone: ``u = HMAC-SHA256(key, row)``
read as a number in [0, 1), non-member iff ``u < holdout_fraction``, where *row* is the record's encoded
codes (every measured column) and its occurrence number among identical rows (the k-th copy of a row hashes
with k, so copies get independent sides; copies are interchangeable, so which physical row is "the k-th"
does not matter). Adding or removing a record therefore never moves another record between the sides,
whatever the row order, and the key (a secret of the party) makes the split unpredictable to anyone else.

**Attack** ``dcr`` (distance to the closest synthetic record, the equivalent of AWS's
DISTANCE_TO_CLOSEST_RECORD_V1, on the schema's binned codes): the distance of a record to the synthetic data
is the number of attributes in which it differs from its closest synthetic record, capped at
`DCR_MAX_DISTANCE` (so 0, 1, .., cap where cap means "cap or more"). It is computed exactly by hashing the
rows with every set of up to cap - 1 attributes masked (`capped_hamming_distances`). A record closer to the
synthetic data is more likely a member: the attack's success is the AUC of members against non-members
(ties count one half), folded as ``max(AUC, 1 - AUC)`` into [0.5, 1].

**What is released** (`dcr_statistics`): ``[members per capped distance | non-members per capped
distance]``, int64 of length ``2 * (cap + 1)``. Each record adds 1 to exactly one cell, chosen by the record
itself (its side, by its own hash) and the fixed synthetic data (its distance): **L2 = L1 = 1** for adding
or removing a record (`DCR_SENSITIVITY_L2`). The summed, noisy histograms give the AUC of the pooled records
(`combined_dcr_score`) and its noise (`dcr_score_stddev`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cleanroom.errors import InvalidInput
from cleanroom.evaluation.utility import auc_from_histograms

ATTACKS = ("dcr",)
DCR_MAX_DISTANCE = 3  # distances 0, 1, 2 and ">= 3": 1 + d + d(d-1)/2 hash passes for d attributes
DCR_SENSITIVITY_L2 = 1.0
SCORE_NOISE_DRAWS = 200
_SPLIT_TAG = b"cleanroom/membership-split/v2"
_HASH_SEED = 0x5EED_DC12  # public: the row hashes only have to be collision-free, not secret

IntVector = NDArray[np.int64]


# ---- the member / non-member split ---------------------------------------------------------------------


@dataclass(frozen=True)
class MembershipSplit:
    """Row indices of one party's data: members (used for training) and non-members (held out)."""

    members: NDArray[np.int64]
    nonmembers: NDArray[np.int64]


def _as_rows(codes: ArrayLike) -> NDArray[np.int64]:
    array = np.asarray(codes)
    if array.ndim != 2:
        raise InvalidInput(f"codes have shape {array.shape}, expected (rows, attributes)")
    return np.ascontiguousarray(array, dtype="<i8")


def occurrence_numbers(codes: ArrayLike) -> NDArray[np.int64]:
    """For each row, how many identical rows precede it in a canonical order (0 for a row's first copy)."""
    rows = _as_rows(codes)
    n = rows.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(rows.T[::-1]) if rows.shape[1] else np.arange(n)
    ordered = rows[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    numbers = np.empty(n, dtype=np.int64)
    numbers[order] = np.arange(n) - first
    return numbers


def record_units(codes: ArrayLike, secret: bytes) -> NDArray[np.float64]:
    """Each record's keyed hash as a number in [0, 1): HMAC-SHA256 of (its codes, its occurrence number)."""
    rows = _as_rows(codes)
    n, width = rows.shape[0], 8 * (rows.shape[1] + 1)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    key = hmac.digest(secret, _SPLIT_TAG, hashlib.sha256)
    message = np.concatenate([rows, occurrence_numbers(rows)[:, None]], axis=1).astype("<i8").tobytes()
    digests = b"".join(
        hmac.digest(key, message[start : start + width], hashlib.sha256)[:8]
        for start in range(0, n * width, width)
    )
    return np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64


def membership_split(codes: ArrayLike, secret: bytes, holdout_fraction: float) -> MembershipSplit:
    """Non-members: the records whose keyed hash is below `holdout_fraction`; the others are members."""
    if not 0.0 < holdout_fraction < 1.0:
        raise InvalidInput(f"holdout_fraction ({holdout_fraction}) must be in (0, 1)")
    held_out = record_units(codes, secret) < holdout_fraction
    return MembershipSplit(
        np.flatnonzero(~held_out).astype(np.int64), np.flatnonzero(held_out).astype(np.int64)
    )


# ---- distance to the closest synthetic record --------------------------------------------------------


def _column_hashes(rows: NDArray[np.int64], shape: Sequence[int]) -> list[NDArray[np.uint64]]:
    """A random 64-bit value per (attribute, level) looked up for every row (simple tabulation hashing)."""
    rng = np.random.default_rng(_HASH_SEED)
    tables = [rng.integers(0, 2**64, size=max(int(size), 1), dtype=np.uint64) for size in shape]
    return [tables[j][rows[:, j]] for j in range(rows.shape[1])]


def _xor(columns: Sequence[NDArray[np.uint64]], size: int) -> NDArray[np.uint64]:
    out = np.zeros(size, dtype=np.uint64)
    for column in columns:
        out ^= column
    return out


@dataclass(frozen=True)
class _HashedRows:
    """Per-attribute hashes and full-row hash of some rows."""

    columns: list[NDArray[np.uint64]]
    full: NDArray[np.uint64]

    @classmethod
    def of(cls, rows: NDArray[np.int64], shape: Sequence[int], distinct: bool = False) -> _HashedRows:
        """The rows' hashes; with `distinct`, of one row per distinct full-row hash only."""
        columns = _column_hashes(rows, shape)
        full = _xor(columns, rows.shape[0])
        if not distinct:
            return cls(columns, full)
        full, first = np.unique(full, return_index=True)
        return cls([c[first] for c in columns], full)

    def masked(self, mask: Sequence[int], rows: NDArray[np.int64] | None = None) -> NDArray[np.uint64]:
        """Hashes of the distinct rows (or of those at `rows`) with the attributes in `mask` left out."""
        if rows is None:
            return self.full ^ _xor([self.columns[j] for j in mask], self.full.size)
        return self.full[rows] ^ _xor([self.columns[j][rows] for j in mask], rows.size)


def _check_rows(rows: NDArray[np.int64], shape: Sequence[int], what: str) -> None:
    if rows.shape[1] != len(shape):
        raise InvalidInput(f"{what} codes have {rows.shape[1]} attributes, the domain {len(shape)}")
    if rows.size and ((rows < 0).any() or (rows >= np.asarray(shape, dtype=np.int64)).any()):
        raise InvalidInput(f"{what} codes fall outside the domain {tuple(shape)}")


def capped_hamming_distances(
    query: ArrayLike, synthetic: ArrayLike, shape: Sequence[int], cap: int = DCR_MAX_DISTANCE
) -> IntVector:
    """For each query row: attributes in which it differs from its closest synthetic row, at most `cap`.

    Exact up to 64-bit hash collisions (probability about 2^-64 per pair of rows and mask): a query is within
    distance j of the synthetic data iff, for some set of j attributes, the two rows with those attributes
    masked are equal; each set is one hash-table lookup of hashed rows, over the queries not resolved yet.
    """
    queries, rows = _as_rows(query), _as_rows(synthetic)
    _check_rows(queries, shape, "query")
    _check_rows(rows, shape, "synthetic")
    if not isinstance(cap, int) or cap < 1:
        raise InvalidInput(f"cap ({cap!r}) must be an integer >= 1")
    if queries.shape[0] == 0 or rows.shape[0] == 0:
        return np.full(queries.shape[0], cap, dtype=np.int64)
    # each query on its own (even a hash collision cannot tie one record's cell to another's); the fixed
    # synthetic rows are deduplicated
    import pandas as pd  # a hash-table membership test (Series.isin); imported where it is used

    hashed_queries, hashed_synthetic = _HashedRows.of(queries, shape), _HashedRows.of(rows, shape, True)
    distances = np.full(queries.shape[0], cap, dtype=np.int64)
    open_rows = np.arange(queries.shape[0])
    for level in range(min(cap, len(shape) + 1)):
        for mask in itertools.combinations(range(len(shape)), level):
            if open_rows.size == 0:
                break
            probe = pd.Series(hashed_queries.masked(mask, open_rows), copy=False)
            found = probe.isin(hashed_synthetic.masked(mask)).to_numpy(dtype=bool)  # one hash-table pass
            distances[open_rows[found]] = level
            open_rows = open_rows[~found]
    return distances


# ---- the released statistic and its combination ------------------------------------------------------


def dcr_vector_length(cap: int = DCR_MAX_DISTANCE) -> int:
    return 2 * (cap + 1)


def dcr_statistics(
    member_distances: ArrayLike, nonmember_distances: ArrayLike, cap: int = DCR_MAX_DISTANCE
) -> IntVector:
    """``[members per capped distance 0..cap | non-members per capped distance 0..cap]`` (int64)."""

    def histogram(values: ArrayLike) -> IntVector:
        capped = np.clip(np.asarray(values, dtype=np.int64).ravel(), 0, cap)
        return np.bincount(capped, minlength=cap + 1).astype(np.int64)

    return np.concatenate([histogram(member_distances), histogram(nonmember_distances)])


def membership_score(auc: float) -> float:
    """Fold an AUC into [0.5, 1]: ranking members lower is as informative as ranking them higher."""
    return max(auc, 1.0 - auc) if not math.isnan(auc) else math.nan


def _split_vector(vector: ArrayLike, cap: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    values = np.asarray(vector, dtype=np.float64).ravel()
    if values.size != dcr_vector_length(cap):
        raise InvalidInput(f"DCR vector has length {values.size}, expected {dcr_vector_length(cap)}")
    return values[: cap + 1], values[cap + 1 :]


def combined_dcr_score(summed_vector: ArrayLike, cap: int = DCR_MAX_DISTANCE) -> float:
    """Folded AUC in [0.5, 1] of members vs non-members (NaN if a side's total is not positive).

    A smaller distance scores higher, so the histograms are read from distance cap down to 0.
    """
    members, nonmembers = _split_vector(summed_vector, cap)
    return membership_score(auc_from_histograms(nonmembers[::-1], members[::-1]))


def dcr_score_stddev(
    summed_vector: ArrayLike, sigma: float, cap: int = DCR_MAX_DISTANCE, draws: int = SCORE_NOISE_DRAWS
) -> float:
    """Standard deviation of `combined_dcr_score` under per-cell noise sd `sigma` (parametric bootstrap)."""
    members, nonmembers = _split_vector(summed_vector, cap)
    base = np.concatenate([members, nonmembers])
    rng = np.random.default_rng(0)
    scores = [combined_dcr_score(base + rng.normal(0.0, sigma, base.size), cap) for _ in range(draws)]
    finite = [s for s in scores if math.isfinite(s)]
    return float(np.std(finite)) if len(finite) > 1 else math.nan


@dataclass(frozen=True)
class AttackOutcome:
    """One attack at one party: its exact local score and the vector sent to secure aggregation."""

    attack: str
    local_score: float
    statistics: IntVector
    n_members: int
    n_nonmembers: int

    def to_dict(self) -> dict[str, object]:
        return {
            "attack": self.attack,
            "local_score": self.local_score,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
        }


def run_dcr_attack(
    members: ArrayLike, nonmembers: ArrayLike, synthetic: ArrayLike, shape: Sequence[int]
) -> AttackOutcome:
    """The DCR attack on a party's member and non-member codes against the synthetic codes."""
    member_rows, nonmember_rows = _as_rows(members), _as_rows(nonmembers)
    distances = capped_hamming_distances(np.concatenate([member_rows, nonmember_rows]), synthetic, shape)
    member_distances, nonmember_distances = distances[: len(member_rows)], distances[len(member_rows) :]
    vector = dcr_statistics(member_distances, nonmember_distances)
    return AttackOutcome(
        "dcr", combined_dcr_score(vector), vector, len(member_distances), len(nonmember_distances)
    )


# ---- the release gate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    """Whether the synthetic data and model may be released, and why."""

    released: bool
    reason: str
    scores: dict[str, float]
    max_score: float

    def to_dict(self) -> dict[str, object]:
        return {
            "released": self.released,
            "reason": self.reason,
            "scores": dict(self.scores),
            "max_membership_inference_score": self.max_score,
        }


def check_max_score(max_score: float) -> None:
    if not 0.5 <= max_score <= 1.0:
        raise InvalidInput(f"max_membership_inference_score ({max_score}) must be in [0.5, 1]")


def gate(scores: Mapping[str, float], max_score: float) -> GateDecision:
    """Fail closed: release only if every attack's combined score is known and at most `max_score`.

    A threshold of 1 is no gate (every score is <= 1), so it releases even when a score is unknown.
    """
    check_max_score(max_score)
    values = {name: float(v) for name, v in scores.items()}
    if max_score >= 1.0:  # every score is <= 1: the collaboration chose not to gate (even unknown scores)
        reason = "released: max_membership_inference_score is 1 (no gate)"
        return GateDecision(True, reason, values, max_score)
    if not values:
        return GateDecision(False, "no membership-inference score was computed", values, max_score)
    unknown = sorted(n for n, v in values.items() if math.isnan(v))
    if unknown:
        return GateDecision(
            False, f"membership-inference score unavailable for {', '.join(unknown)}", values, max_score
        )
    over = sorted(n for n, v in values.items() if v > max_score)
    if over:
        detail = ", ".join(f"{n} = {values[n]:.3f}" for n in over)
        return GateDecision(
            False,
            f"release blocked: {detail} exceeds max_membership_inference_score {max_score:.3f}",
            values,
            max_score,
        )
    top = max(values, key=lambda n: values[n])
    return GateDecision(
        True,
        f"released: highest score {top} = {values[top]:.3f} <= "
        f"max_membership_inference_score {max_score:.3f}",
        values,
        max_score,
    )
