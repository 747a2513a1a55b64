"""Membership-inference attacks on released synthetic data, their additive combination, and the release gate.

Each party attacks the synthetic data with its own records: *members* (rows used for training) against
*non-members* (a held-out share of its rows never used for training). An attack gives each record a score in
[0, 1], higher meaning "more likely a member"; its success is the AUC of members vs non-members, reported as
``max(AUC, 1 - AUC)`` in [0.5, 1] (0.5: the attack cannot tell them apart; 1: it always can).

Attacks:

- ``dcr`` (distance to closest record, the equivalent of AWS's DISTANCE_TO_CLOSEST_RECORD_V1): Euclidean
  distance from the record to its nearest synthetic record in a mixed encoding (one-hot categoricals scaled
  so a mismatch costs 1, numericals range-scaled to [0, 1]); score ``1 - sqrt(distance / max_distance)``
  (monotone, so the AUC is that of ``-distance``; the square root spreads small distances over more bins).
- ``density_ratio`` (DOMIAS-style, van Breugel et al. 2023): ``log p_syn(x) - log p_ref(x)`` where both are
  Gaussian kernel densities in the same feature space (small bandwidth, truncated to the k nearest rows),
  p_syn fitted on the synthetic data and p_ref on a *reference* split of the party's held-out rows (disjoint
  from the scored non-members). Where DCR only asks "is there a synthetic record close by?", this asks "is
  the synthetic data denser here than the population is?", which also catches over-representation in
  dense regions (where every record has a close synthetic neighbour). Score ``sigmoid(log-ratio / 4)``.

Additive forms, per attack (both int64, both in `AttackOutcome`):

- rank vector (`attack_rank_statistics`, recommended): ``[S * n_members, round(S * sum over members of the
  share of the party's non-members scored below them)]`` with S = `DEFAULT_RANK_SCALE`; the summed vector
  gives the member-weighted mean of the parties' own AUCs (`combined_rank_score`). Each party scores as many
  members (a uniform subsample) as non-members. Adding or removing one record (with the coupled change of
  the member subsample) moves the count by at most S and the sum by at most 2 S: **L2 <= sqrt(5) * S**
  (`rank_sensitivity_l2`). In AUC units the noise is about ``sqrt(5) * sigma_1 / n_members_total``.
- histogram (`attack_statistics`): ``[non-members' score histogram | members' score histogram]`` over fixed
  bins, L2 = 1 (`ATTACK_SENSITIVITY_L2`), giving the AUC of the pooled records (`combined_attack_score`).
  Its noise accumulates over the bins (about ``sigma * sqrt(n_bins) / n``): at the budgets of a real job it
  swamps the signal (Adult, 3 parties, rho 0.00075: +-0.2), so it is only for generous budgets.

For a fixed synthetic data set and reference split these bounds hold for scored records. A reference-split
record can shift many density-ratio scores; that influence is not bounded, so the reference split must be
used for nothing else (see docs/evaluation.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.evaluation.utility import (
    auc_from_histograms,
    check_n_bins,
    score_histogram,
)
from cleanroom.schema import CATEGORICAL, NUMERICAL, Schema

ATTACK_SENSITIVITY_L2 = 1.0
DEFAULT_BANDWIDTH = 0.35
DEFAULT_NEIGHBOURS = 32
_LOG_RATIO_SCALE = 4.0  # spreads typical log-ratios (a few units) over the [0, 1] histogram
DEFAULT_ATTACK_BINS = 1000
DEFAULT_RANK_SCALE = 2**10  # attack scores crowd together; fine bins keep the binning error small
ATTACKS = ("dcr", "density_ratio")

FloatArray = NDArray[np.float64]
IntVector = NDArray[np.int64]
_ONE_HOT_WEIGHT = 1.0 / math.sqrt(2.0)  # a categorical mismatch then adds exactly 1 to the squared distance


@dataclass(frozen=True)
class MembershipSplit:
    """Row indices of one party's data: training members, scored non-members, and the reference split."""

    members: NDArray[np.int64]
    nonmembers: NDArray[np.int64]
    reference: NDArray[np.int64]


def membership_split(
    n_rows: int, holdout_fraction: float, rng: np.random.Generator, reference_share: float = 0.5
) -> MembershipSplit:
    """Hold out `holdout_fraction` of the rows from training; `reference_share` of them is the reference."""
    if not 0.0 < holdout_fraction < 1.0:
        raise InvalidInput(f"holdout_fraction ({holdout_fraction}) must be in (0, 1)")
    if not 0.0 <= reference_share < 1.0:
        raise InvalidInput(f"reference_share ({reference_share}) must be in [0, 1)")
    order = rng.permutation(n_rows).astype(np.int64)
    n_holdout = int(round(n_rows * holdout_fraction))
    n_reference = int(round(n_holdout * reference_share))
    if n_holdout - n_reference < 1 or n_rows - n_holdout < 1:
        raise InvalidInput(f"{n_rows} rows are too few for holdout_fraction {holdout_fraction}")
    return MembershipSplit(
        np.sort(order[n_holdout:]), np.sort(order[n_reference:n_holdout]), np.sort(order[:n_reference])
    )


def subsample(indices: ArrayLike, max_records: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """At most `max_records` of `indices`, uniformly without replacement (sorted)."""
    array = np.asarray(indices, dtype=np.int64)
    if array.size <= max_records:
        return array
    return np.sort(rng.choice(array, size=max_records, replace=False))


@dataclass(frozen=True)
class FeatureSpace:
    """Mixed-type encoding of raw records for distance attacks, built from public schema information.

    `categorical` maps a column to its categories (compared as strings; anything else, NaN included, is one
    extra level); `numerical` maps a column to its public [lower, upper] (clipped, scaled to [0, 1]; NaN is 0
    plus a missing indicator).
    """

    categorical: Mapping[str, Sequence[str]] = field(default_factory=dict)
    numerical: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (lower, upper) in self.numerical.items():
            if not upper > lower:
                raise InvalidInput(f"numerical column {name!r}: upper ({upper}) must exceed lower ({lower})")
        if not self.categorical and not self.numerical:
            raise InvalidInput("FeatureSpace needs at least one column")

    @property
    def max_distance(self) -> float:
        """Largest possible Euclidean distance between two encoded records."""
        return math.sqrt(len(self.categorical) + 2 * len(self.numerical))

    def transform(self, frame: object) -> FloatArray:
        """Encode a pandas DataFrame (columns by name) into a float matrix."""
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise InvalidInput("FeatureSpace.transform expects a pandas DataFrame")
        blocks: list[FloatArray] = []
        for name, categories in self.categorical.items():
            values = frame[name].astype(object).map(lambda v: None if pd.isna(v) else str(v)).to_numpy()
            levels = [str(c) for c in categories]
            index = np.array(
                [levels.index(v) if v in levels else len(levels) for v in values], dtype=np.int64
            )
            blocks.append(np.eye(len(levels) + 1)[index] * _ONE_HOT_WEIGHT)
        for name, (lower, upper) in self.numerical.items():
            raw = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            missing = np.isnan(raw)
            scaled = (np.clip(np.nan_to_num(raw, nan=lower), lower, upper) - lower) / (upper - lower)
            blocks.append(np.stack([np.where(missing, 0.0, scaled), missing.astype(np.float64)], axis=1))
        return np.concatenate(blocks, axis=1)


def features_from_codes(
    codes: ArrayLike,
    domain: Domain,
    ordinal: Sequence[str] = (),
    missing_codes: Mapping[str, int] | None = None,
) -> FloatArray:
    """Encode integer codes: `ordinal` attributes as code / (levels - 1), the others one-hot.

    An ordinal attribute with an entry in `missing_codes` (its last level, `__missing__`) is scaled over the
    other levels and gets a missing indicator. Each attribute adds at most 1 (ordinal with missing: 2) to the
    squared distance between two rows; `codes_max_distance` gives the largest distance.
    """
    array = np.asarray(codes, dtype=np.int64)
    missing = dict(missing_codes or {})
    blocks: list[FloatArray] = []
    for j, (name, size) in enumerate(zip(domain.attrs, domain.shape, strict=True)):
        column = array[:, j]
        if name not in ordinal:
            blocks.append(np.eye(size)[column] * _ONE_HOT_WEIGHT)
        elif name in missing:
            is_missing = column == missing[name]
            scaled = np.where(is_missing, 0.0, column / max(missing[name] - 1, 1))
            blocks.append(np.stack([scaled, is_missing.astype(np.float64)], axis=1))
        else:
            blocks.append((column / max(size - 1, 1)).astype(np.float64)[:, None])
    return np.concatenate(blocks, axis=1)


def codes_max_distance(
    domain: Domain, ordinal: Sequence[str] = (), missing_codes: Mapping[str, int] | None = None
) -> float:
    """Largest distance between two rows encoded by `features_from_codes` with the same arguments."""
    missing = missing_codes or {}
    return math.sqrt(len(domain) + sum(1 for name in ordinal if name in missing))


def schema_code_features(schema: Schema) -> tuple[tuple[str, ...], dict[str, int]]:
    """`ordinal` and `missing_codes` for `features_from_codes`: a schema's numerical columns are ordinal."""
    numerical = tuple(c for c in schema.measured_columns if c.type == NUMERICAL)
    missing = {c.name: c.missing_code for c in numerical if c.missing_code is not None}
    return tuple(c.name for c in numerical), missing


def schema_feature_space(schema: Schema) -> FeatureSpace:
    """A `FeatureSpace` for raw (decoded) records from a schema's public categories and bounds."""
    measured = schema.measured_columns
    categorical = {c.name: c.categories for c in measured if c.type == CATEGORICAL}
    numerical = {
        c.name: (float(c.lower), float(c.upper))
        for c in measured
        if c.type == NUMERICAL and c.lower is not None and c.upper is not None
    }
    return FeatureSpace(categorical, numerical)


def dcr_scores(query: ArrayLike, synthetic: ArrayLike, max_distance: float) -> FloatArray:
    """DCR attack scores in [0, 1]: ``1 - sqrt(d / max_distance)``, d the distance to the closest record."""
    if max_distance <= 0:
        raise InvalidInput(f"max_distance ({max_distance}) must be positive")
    finder = NearestNeighbors(n_neighbors=1).fit(np.asarray(synthetic, dtype=np.float64))
    distances, _ = finder.kneighbors(np.asarray(query, dtype=np.float64))
    relative = np.clip(distances[:, 0] / max_distance, 0.0, 1.0)
    return np.asarray(1.0 - np.sqrt(relative), dtype=np.float64)


def knn_log_density(
    query: ArrayLike, sample: ArrayLike, bandwidth: float = DEFAULT_BANDWIDTH, k: int = DEFAULT_NEIGHBOURS
) -> FloatArray:
    """Log of a Gaussian kernel density of `sample` at each query row, summed over the k nearest rows only.

    With the small default bandwidth a row at distance 1 (one categorical mismatch) weighs exp(-4), so the
    dropped far rows change little; it keeps the cost at one nearest-neighbour search.
    """
    if bandwidth <= 0 or k < 1:
        raise InvalidInput(f"bandwidth ({bandwidth}) must be positive and k ({k}) >= 1")
    points = np.asarray(sample, dtype=np.float64)
    finder = NearestNeighbors(n_neighbors=min(k, len(points))).fit(points)
    distances, _ = finder.kneighbors(np.asarray(query, dtype=np.float64))
    exponents = -(distances**2) / (2.0 * bandwidth**2)
    top = exponents.max(axis=1)
    log_sum = top + np.log(np.exp(exponents - top[:, None]).sum(axis=1))
    return np.asarray(log_sum - math.log(len(points)), dtype=np.float64)


def density_ratio_scores(
    query: ArrayLike,
    synthetic: ArrayLike,
    reference: ArrayLike,
    bandwidth: float = DEFAULT_BANDWIDTH,
    k: int = DEFAULT_NEIGHBOURS,
) -> FloatArray:
    """DOMIAS-style scores in (0, 1): ``sigmoid((log p_syn(x) - log p_ref(x)) / 4)`` on feature rows."""
    log_ratio = knn_log_density(query, synthetic, bandwidth, k) - knn_log_density(
        query, reference, bandwidth, k
    )
    return np.asarray(1.0 / (1.0 + np.exp(-log_ratio / _LOG_RATIO_SCALE)), dtype=np.float64)


def attack_statistics(
    member_scores: ArrayLike, nonmember_scores: ArrayLike, n_bins: int = DEFAULT_ATTACK_BINS
) -> IntVector:
    """One party's additive attack vector: ``[non-member histogram | member histogram]`` (int64)."""
    return np.concatenate([score_histogram(nonmember_scores, n_bins), score_histogram(member_scores, n_bins)])


def membership_score(auc: float) -> float:
    """Fold an AUC into [0.5, 1]: ranking members lower is as informative as ranking them higher."""
    return max(auc, 1.0 - auc) if not math.isnan(auc) else math.nan


def combined_attack_score(summed_vector: ArrayLike, n_bins: int = DEFAULT_ATTACK_BINS) -> float:
    """Score in [0.5, 1] (NaN if a group is empty) from the summed, possibly noisy, attack vectors."""
    check_n_bins(n_bins)
    values = np.asarray(summed_vector, dtype=np.float64).ravel()
    if values.size != 2 * n_bins:
        raise InvalidInput(f"attack vector has length {values.size}, expected {2 * n_bins}")
    return membership_score(auc_from_histograms(values[:n_bins], values[n_bins:]))


def rank_sensitivity_l2(scale: int = DEFAULT_RANK_SCALE) -> float:
    """Per-record L2 sensitivity of `attack_rank_statistics` under the balanced protocol (see module doc)."""
    return math.sqrt(5.0) * scale


def attack_rank_statistics(
    member_scores: ArrayLike, nonmember_scores: ArrayLike, scale: int = DEFAULT_RANK_SCALE
) -> IntVector:
    """One party's additive rank vector ``[scale * n_members, round(scale * U / n_nonmembers)]``.

    U / n_nonmembers = sum over members of the share of non-members scored below them (ties count half),
    so its ratio to n_members is the party's own AUC. Requires as many scored members as non-members.
    """
    members = np.asarray(member_scores, dtype=np.float64).ravel()
    nonmembers = np.sort(np.asarray(nonmember_scores, dtype=np.float64).ravel())
    if members.size != nonmembers.size or members.size == 0:
        raise InvalidInput(
            f"scored members ({members.size}) and non-members ({nonmembers.size}) must be equal "
            "in number and non-zero (the sensitivity bound relies on it)"
        )
    below = np.searchsorted(nonmembers, members, side="left")
    up_to = np.searchsorted(nonmembers, members, side="right")
    share_below = float((below + 0.5 * (up_to - below)).sum()) / nonmembers.size
    return np.array([scale * members.size, round(scale * share_below)], dtype=np.int64)


def combined_rank_score(summed_vector: ArrayLike, scale: int = DEFAULT_RANK_SCALE) -> float:
    """Score in [0.5, 1] (NaN if no members) from summed, possibly noisy, rank vectors.

    It is the member-weighted mean of the parties' own AUCs (each party's attacker compares its own members
    with its own non-members), not the AUC of the pooled records.
    """
    values = np.asarray(summed_vector, dtype=np.float64).ravel()
    if values.size != 2:
        raise InvalidInput(f"rank vector has length {values.size}, expected 2")
    if values[0] <= 0:
        return math.nan
    return membership_score(min(max(float(values[1] / values[0]), 0.0), 1.0))


def rank_score_stddev(summed_vector: ArrayLike, sigma: float) -> float:
    """Approximate standard deviation of `combined_rank_score` when each summed entry has noise sd `sigma`."""
    values = np.asarray(summed_vector, dtype=np.float64).ravel()
    return float(sigma / values[0]) if values.size == 2 and values[0] > 0 else math.nan


def exact_attack_score(member_scores: ArrayLike, nonmember_scores: ArrayLike) -> float:
    """Unbinned score in [0.5, 1] for the party's local report."""
    members, nonmembers = np.asarray(member_scores).ravel(), np.asarray(nonmember_scores).ravel()
    if members.size == 0 or nonmembers.size == 0:
        return math.nan
    labels = np.concatenate([np.zeros(nonmembers.size), np.ones(members.size)])
    return membership_score(float(roc_auc_score(labels, np.concatenate([nonmembers, members]))))


@dataclass(frozen=True)
class AttackOutcome:
    """One attack at one party: exact local score, and the vector to send to secure aggregation."""

    attack: str
    local_score: float
    statistics: IntVector  # `attack_rank_statistics`: the vector to noise and sum (low noise; gate on it)
    histogram: IntVector  # `attack_statistics`: pooled-AUC alternative, needs far more budget
    n_members: int
    n_nonmembers: int

    def to_dict(self) -> dict[str, object]:
        return {
            "attack": self.attack,
            "local_score": self.local_score,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
        }


def run_attacks(
    members: ArrayLike,
    nonmembers: ArrayLike,
    synthetic: ArrayLike,
    reference: ArrayLike,
    max_distance: float,
    n_bins: int = DEFAULT_ATTACK_BINS,
) -> tuple[AttackOutcome, ...]:
    """Run every attack (`ATTACKS` order) on feature rows of a party's members, non-members, reference."""
    scores = {
        "dcr": (
            dcr_scores(members, synthetic, max_distance),
            dcr_scores(nonmembers, synthetic, max_distance),
        ),
        "density_ratio": (
            density_ratio_scores(members, synthetic, reference),
            density_ratio_scores(nonmembers, synthetic, reference),
        ),
    }
    return tuple(
        AttackOutcome(
            name,
            exact_attack_score(*scores[name]),
            attack_rank_statistics(*scores[name]),
            attack_statistics(*scores[name], n_bins),
            len(scores[name][0]),
            len(scores[name][1]),
        )
        for name in ATTACKS
    )


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
