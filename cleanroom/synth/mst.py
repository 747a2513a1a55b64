"""Federated MST (McKenna, Miklau, Sheldon 2021): three rounds of additive, noisy marginal releases.

Centralised MST spends rho/3 on all 1-way marginals, rho/3 on selecting a maximum spanning tree of
attribute pairs with the exponential mechanism (score ||M_ab(D) - M_ab(model)||_1), and rho/3 on the
selected 2-way marginals. Its score needs the whole dataset: the L1 norm of a difference does not add up
across parties, and summing per-party scores (each computed on local data) is what FLAIM (Maddock, Cormode,
Maple, KDD 2024, arXiv 2310.03447) shows to degrade when the parties' data differ (heterogeneity), besides
releasing per-party statistics. So here every release is an additive count table that secure aggregation can
sum, and selection is pure post-processing of what was already released:

1. round ``one-way``: every 1-way marginal, rho * split[0].
2. round ``candidates``: the noisy 2-way marginal of every candidate pair (all pairs of attributes with
   more than one level whose table has at most ``max_pair_cells`` cells), rho * split[1] shared by all of
   them. The coordinator weighs each pair by the L1 distance between its noisy 2-way table and the product
   of the noisy 1-ways (scaled to the noisy total), minus the part of that distance expected from the noise
   alone (cells * stddev * sqrt(2/pi)), and takes a maximum spanning tree (Kruskal). This costs no extra
   privacy beyond the round itself (post-processing).
3. round ``tree``: the selected pairs again, now with rho * split[2] shared by only n_attrs - 1 tables, so
   each is measured far more precisely than in round 2.

Privacy cost of this choice: round 2 spends a third of the budget on many noisy tables instead of one
exponential-mechanism selection, so selection is noisier than centralised MST when there are many pairs;
in exchange nothing but additive noisy counts ever leaves a party, the cost is exactly the Gaussian
mechanism's (rho = k / (2 sigma^2) for k tables of L2 sensitivity 1 each), and the round-2 tables are not
wasted: estimation uses every released measurement. The round-2 tables of tree pairs are fitted as they are;
so are further round-2 pairs, best (positive) score first, as long as the junction tree of the model stays
within `extra_clique_cells` per clique and `extra_total_cells` in all (a small extension of MST's tree model
that costs nothing in privacy and, on adult, lifts TSTR AUC by several points; set extra_clique_cells=0 for
the plain tree). The remaining round-2 tables are summed down to 1-way marginals (stddev sigma *
sqrt(cells summed)).

Noise calibration: a round of k tables, each changed by one record in one cell by 1 (L2 sensitivity sqrt(k),
L1 sensitivity k), with per-cell total noise variance sigma^2 costs about rho = k / (2 sigma^2).
`cleanroom.accounting.calibrate` picks sigma_total2 (an exact Fraction, per-party share rounded up, never
below sigma_party = 2) for the distributed discrete Gaussian with `n_min` honest shares, tau term included;
`RoundSpec.rho` is the realised cost, at most the round's share, so the rounds sum to at most rho_total.

Domain handling: after round 1 the coordinator compresses the domain from the noisy 1-ways
(`cleanroom.synth.compression`, MST's rule: levels below `compress_z` sigma merged, reserved `__missing__` /
`__other__` levels below it dropped), as post-processing: the parties still count the full schema domain and
every later table is summed onto the compressed domain before selection and fitting. The rounds' sizes stay
independent of the data (the candidates are every pair of attributes with more than one schema level whose
table has at most ``max_pair_cells`` cells), so the noise floor can be checked before any round; an attribute
compressed to one level simply scores nothing. `compress_z=0` turns compression off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import numpy.typing as npt

from cleanroom.accounting import DistributedGaussian, NoiseLayout
from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.synth.compression import (
    CellMeasurement,
    CompressedModel,
    Compression,
    cell_variance,
)
from cleanroom.synth.estimation import EstimationConfig, estimate, estimate_total
from cleanroom.synth.junction_tree import build_junction_tree
from cleanroom.synth.selection import spanning_tree


def round_spec(
    domain: Domain, name: str, cliques: Sequence[Clique], rho: float, layout: NoiseLayout
) -> RoundSpec:
    """A round measuring `cliques` at zCDP cost at most `rho` (distributed discrete Gaussian noise)."""
    k = len(cliques)
    dim = sum(domain.project(c).size() for c in cliques)
    l1, l2 = float(k), math.sqrt(k)
    sigma2 = layout.calibrate(rho, l2, sensitivity_l1=l1, dim=dim)
    noise = DistributedGaussian.of(sigma2, layout)
    realised = noise.rho(sensitivity_l1=l1, sensitivity_l2=l2, dim=dim)
    return RoundSpec(name, tuple(cliques), sigma2, realised)


@dataclass(frozen=True)
class MSTPlanner:
    """Plans the three MST rounds for `domain` within `rho_total` (zCDP) and fits the model at the end."""

    domain: Domain
    rho_total: float
    split: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    max_pair_cells: int = 100_000
    estimation: EstimationConfig = field(default_factory=EstimationConfig)
    extra_clique_cells: int = 5_000
    extra_total_cells: int = 30_000
    n_min: int = 1
    n_parties: int | None = None
    colluders: int = 0
    noise_shares: int = 1
    compress_z: float = 3.0
    special_levels: Mapping[str, tuple[int, ...]] = field(default_factory=dict, hash=False)
    ordinal: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.compress_z) and self.compress_z >= 0):
            raise InvalidInput(f"compress_z ({self.compress_z}) must be finite and >= 0")
        if not (math.isfinite(self.rho_total) and self.rho_total > 0):
            raise InvalidInput(f"rho_total ({self.rho_total}) must be finite and > 0")
        if len(self.split) != 3 or any(not s > 0 for s in self.split) or abs(sum(self.split) - 1) > 1e-9:
            raise InvalidInput(f"split {self.split} must be three positive shares summing to 1")
        if self.max_pair_cells < 1:
            raise InvalidInput(f"max_pair_cells ({self.max_pair_cells}) must be >= 1")
        if not 1 <= self.n_min <= (self.n_parties or self.n_min):
            raise InvalidInput(f"n_min ({self.n_min}) must be in [1, n_parties ({self.n_parties})]")
        _ = self.layout  # validates colluders and noise_shares
        if self.extra_clique_cells < 0 or self.extra_total_cells < 0:
            raise InvalidInput(
                f"extra_clique_cells ({self.extra_clique_cells}) and extra_total_cells"
                f" ({self.extra_total_cells}) must be >= 0"
            )

    def candidate_pairs(self) -> tuple[Clique, ...]:
        """Pairs of attributes with > 1 level whose table has <= max_pair_cells cells (data-independent)."""
        return candidate_pairs(self.domain, self.max_pair_cells)

    def compression(self, one_way: Sequence[Measurement]) -> Compression:
        """The compressed domain decided from the round-1 tables (post-processing)."""
        if self.compress_z == 0:
            return Compression.identity(self.domain)
        return Compression.from_one_ways(
            self.domain, one_way, self.compress_z, self.special_levels, self.ordinal
        )

    def first_round(self) -> RoundSpec:
        share = self.split[0] if self.candidate_pairs() else 1.0
        return self._spec("one-way", [(a,) for a in self.domain.attrs], share)

    def round_sizes(self) -> tuple[tuple[str, int, float], ...]:
        """(name, tables, share of rho_total) of every round, known before any measurement.

        Kruskal joins every pair of components a candidate connects, whatever the scores, so the tree round
        always has (attributes in the candidate graph) - (its components) tables.
        """
        candidates = self.candidate_pairs()
        if not candidates:
            return (("one-way", len(self.domain), 1.0),)
        tree = len(spanning_tree(self.domain, dict.fromkeys(candidates, 0.0)))
        return (
            ("one-way", len(self.domain), self.split[0]),
            ("candidates", len(candidates), self.split[1]),
            ("tree", tree, self.split[2]),
        )

    def fixed_round_sizes(self) -> tuple[tuple[str, int, float], ...]:
        """The rounds whose number of tables the schema fixes: all of MST's."""
        return self.round_sizes()

    @property
    def layout(self) -> NoiseLayout:
        return NoiseLayout(self.n_parties or self.n_min, self.n_min, self.colluders, self.noise_shares)

    def _spec(self, name: str, cliques: Sequence[Clique], share: float) -> RoundSpec:
        return round_spec(self.domain, name, cliques, self.rho_total * share, self.layout)

    def next_round(self, measurements: Sequence[Measurement]) -> RoundSpec | None:
        """The next round given every measurement released so far, in round order (None when done)."""
        one_way, pairs, tree = self._split_rounds(measurements)
        compression = self.compression(one_way)
        if pairs is None:
            candidates = self.candidate_pairs()
            return self._spec("candidates", candidates, self.split[1]) if candidates else None
        if tree is None:
            small = compression.compressed
            selected = select_tree(small, _projected(compression, one_way), _projected(compression, pairs))
            return self._spec("tree", selected, self.split[2]) if selected else None
        return None

    def _split_rounds(
        self, measurements: Sequence[Measurement]
    ) -> tuple[list[Measurement], list[Measurement] | None, list[Measurement] | None]:
        one_way = leading_one_ways(self.domain, measurements, "MSTPlanner")
        n_one = len(one_way)
        if len(measurements) == n_one:
            return one_way, None, None
        candidates = self.candidate_pairs()
        pairs = list(measurements[n_one : n_one + len(candidates)])
        if [m.clique for m in pairs] != list(candidates):
            raise InvalidInput(
                "MSTPlanner: measurements after the 1-ways must be the candidate pairs in order"
            )
        rest = list(measurements[n_one + len(candidates) :])
        return one_way, pairs, (rest if rest else None)

    def estimate(self, measurements: Sequence[Measurement]) -> CompressedModel:
        """Fit the model to every released measurement (round-2 tables off the tree summed to 1-ways)."""
        if not measurements:
            raise InvalidInput("MSTPlanner.estimate: no measurements")
        one_way, pairs, tree = self._split_rounds(measurements)
        compression = self.compression(one_way)
        small = compression.compressed
        one_way, pairs = _projected(compression, one_way), _projected(compression, pairs or [])
        tree = _projected(compression, tree or [])
        on_tree = {m.clique for m in tree}
        if pairs and self.extra_clique_cells > 0:
            on_tree |= extra_pairs(
                small, one_way, pairs, on_tree, self.extra_clique_cells, self.extra_total_cells
            )
        kept = one_way + tree
        for m in pairs:
            kept.extend([m] if m.clique in on_tree else project_to_one_ways(m))
        return CompressedModel(estimate(small, kept, self.estimation), compression)


def _projected(compression: Compression, measurements: Sequence[Measurement]) -> list[Measurement]:
    return [compression.project(m) for m in measurements]


def extra_pairs(
    domain: Domain,
    one_way: Sequence[Measurement],
    pairs: Sequence[Measurement],
    chosen: set[Clique],
    clique_cells: int,
    total_cells: int,
) -> set[Clique]:
    """Round-2 pairs to keep as 2-way measurements beyond `chosen`, best score first.

    A pair is added if its noise-corrected score is positive and the junction tree of all kept pairs keeps
    every clique within `clique_cells` and the sum of clique sizes within `total_cells` (speed and memory).
    """
    scores = pair_scores(domain, one_way, pairs)
    extra: set[Clique] = set()
    for pair in sorted(scores, key=lambda p: (-scores[p], p)):
        if pair in chosen or scores[pair] <= 0:
            continue
        try:
            tree = build_junction_tree(domain, sorted(chosen | extra | {pair}), clique_cells)
        except InvalidInput:
            continue
        if sum(domain.project(c).size() for c in tree.cliques) <= total_cells:
            extra.add(pair)
    return extra


def project_to_one_ways(m: Measurement) -> list[Measurement]:
    """The 1-way marginals implied by a 2-way measurement, each with the noise of the cells summed."""
    values = np.asarray(m.noisy_values)
    variance = np.broadcast_to(np.asarray(cell_variance(m), dtype=np.float64), values.shape)
    out: list[Measurement] = []
    for axis, attr in enumerate(m.clique):
        other = tuple(i for i in range(values.ndim) if i != axis)
        summed = variance.sum(axis=other)
        stddev = math.sqrt(float(summed.max()))
        out.append(CellMeasurement((attr,), values.sum(axis=other), stddev, cell_variance=summed))
    return out


def _one_way_probabilities(
    domain: Domain, one_way: Sequence[Measurement]
) -> dict[str, npt.NDArray[np.float64]]:
    probabilities = {}
    for m in one_way:
        clipped = np.maximum(np.asarray(m.noisy_values), 0.0)
        mass = clipped.sum()
        size = domain.size(m.clique[0])
        probabilities[m.clique[0]] = clipped / mass if mass > 0 else np.full(size, 1.0 / size)
    return probabilities


def pair_scores(
    domain: Domain, one_way: Sequence[Measurement], pairs: Sequence[Measurement]
) -> dict[Clique, float]:
    """Noise-corrected L1 distance of each noisy pair table from the product of the noisy 1-ways."""
    total = estimate_total(one_way)
    probabilities = _one_way_probabilities(domain, one_way)
    scores = {}
    for m in pairs:
        a, b = m.clique
        expected = total * np.outer(probabilities[a], probabilities[b])
        distance = float(np.abs(np.asarray(m.noisy_values) - expected).sum())
        noise = np.sum(np.sqrt(np.broadcast_to(cell_variance(m), m.noisy_values.shape)))
        scores[m.clique] = distance - float(noise) * math.sqrt(2 / math.pi)
    return scores


def candidate_pairs(domain: Domain, max_pair_cells: int) -> tuple[Clique, ...]:
    """Pairs of attributes with > 1 level whose table has <= max_pair_cells cells (data-independent)."""
    informative = [a for a in domain.attrs if domain.size(a) > 1]
    return tuple(
        (a, b) for a, b in combinations(informative, 2) if domain.size(a) * domain.size(b) <= max_pair_cells
    )


def leading_one_ways(domain: Domain, measurements: Sequence[Measurement], who: str) -> list[Measurement]:
    """The first round's 1-way measurements, checked to be every attribute's in order; every measurement is
    checked against the domain."""
    n_one = len(domain)
    one_way = list(measurements[:n_one])
    if [m.clique for m in one_way] != [(a,) for a in domain.attrs]:
        raise InvalidInput(f"{who}: the first {n_one} measurements must be the 1-way marginals in order")
    for m in measurements:
        m.check_domain(domain)
    return one_way


def select_tree(domain: Domain, one_way: Sequence[Measurement], pairs: Sequence[Measurement]) -> list[Clique]:
    """Maximum spanning tree (forest if candidates do not connect) over the pair scores, Kruskal."""
    return spanning_tree(domain, pair_scores(domain, one_way, pairs))
