"""Adaptive federated synthesizer: AIM-style rounds of noisy marginal tables, every choice by post-processing.

AIM (McKenna, Mullins, Sheldon, Miklau, VLDB 2022, "AIM: an adaptive and iterative mechanism for
differentially private synthetic data") measures, round after round, the marginals the current model fits
worst, weighted by a workload, and spends more per measurement where it pays. Its selection is an
exponential mechanism over ||M(D) - M(model)||_1, a score that needs the pooled data. Here, as in
`cleanroom.synth.mst` (and for the heterogeneity reasons of FLAIM, Maddock et al., KDD 2024), every release
is a round of 1-way / 2-way count tables over schema columns that secure aggregation sums, and every choice
reads only tables already released:

1. ``one-way`` (`one_way_share` of rho): every 1-way marginal. The domain is then compressed from them
   (`cleanroom.synth.compression`: rare levels merged, reserved `__missing__` / `__other__` levels that look
   empty dropped) - the parties still count the full domain; the coordinator sums cells.
2. ``screen-target`` (`target_screen_share`, when the schema has a target): every pair with the target.
3. ``screen`` (`screen_share`): every other candidate pair. Screens are cheap and imprecise; they are what
   selection reads, and the final fit uses them too (summed to 1-ways, or as cliques if `screen_cliques`).
4. refinement rounds, one per entry of `refine_rounds` (default ``target`` then ``gain``), sharing the rest of
   rho by `refine_weights`: the model is fitted to every precise release so far (not the screens, whose noise
   then stays independent of it), every pair's error is estimated from its screen (`selection.residual_score`,
   `screen_z` / `target_z` noise standard deviations held back; for ordinal columns also on the screen with
   neighbouring levels summed into `screen_levels` runs of equal noisy mass, which finds a dependence spread
   thinly over many cells, and the larger of the two estimates is kept) and weighted by 1 + `target_weight`
   for pairs with the target (the workload: the task's model learns from them), then
   - ``target``: among the target's pairs, the set with the largest total gain at the noise such a round
     would have (`selection.best_gain_set`, AIM's rule: few large tables get a small sigma, many small ones
     share it; a pair measured before gains only from the lower combined noise). With `lead_pair` the pair
     the model misses most is always in the set: AIM's gain (error minus expected noise) ranks a big table
     with the largest error (bike sharing's hour x count, 360 cells) below small ones, yet without it a
     regression target's synthetic conditional loses its main driver (measured: R^2 0.01-0.05 on some seeds);
   - ``gain``: the same rule over every candidate pair (AIM's selection, made one round): each pair is
     measured only if the error it removes exceeds the noise it adds at that round's sigma. On the suite it
     beats ``structure``: MST's tree and extras measure weak pairs whose noise the fit then takes for
     structure, and many noisy pairs with a regression target act like a naive-Bayes product of noisy
     factors, whose overconfident conditional pulls R^2 down (bike sharing 0.38 -> 0.56 at epsilon 1);
   - ``structure``: a maximum spanning forest of the errors (MST's selection, now against the current
     model) plus the next largest, up to `structure_pairs` * (attributes - 1) pairs, keeping the model's
     junction tree within `max_clique_cells` per clique and `max_total_cells` in all;
   - ``forest``: the spanning forest only.
   `target_levels` (0: off) caps a numerical target's compressed levels at that many neighbouring bins of
   equal noisy mass (fewer, fuller cells in every target pair); measured on bike sharing at epsilon 1 it does
   not help (8 levels: median R^2 0.518 vs 0.536 over 6 seeds; 5 levels: 0.564 vs 0.562 over 3), so it is
   off by default (docs/quality.md).
5. The final model is fitted to every release (`cleanroom.synth.estimation`).
   Every round keeps the model's junction tree within `max_clique_cells` per clique and `max_total_cells`
   in all (30,000 / 150,000). The caps bind on credit default, whose bill and payment chains triangulate
   into wide cliques: raised from 20,000 / 100,000 they cut its median 2-way TVD at epsilon 1 by 0.004 and
   0.006 on two sets of 4 paired seeds, at 1.06-1.1x the slowest synthesis wall; they do not bind on the
   other suite data.

Privacy cost: a round of k tables, each changed by one record in one cell by 1 (L2 sensitivity sqrt(k),
L1 k), with total per-cell noise variance sigma^2 costs rho ~ k / (2 sigma^2) for the distributed discrete
Gaussian (`cleanroom.accounting.calibrate`; the realised, never larger, rho is charged). Each round is
planned as a share of `rho_total` and capped at what the rounds before it left, the last refinement round
takes exactly the rest, so the rounds' rho never sum above `rho_total` (tested). Compression, selection and
estimation read only released noisy sums: no privacy cost. Round sizes: the 1-way and screen rounds depend
only on the schema; a refinement round holds between 1 and all candidate pairs (`round_sizes`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cleanroom.accounting import NoiseLayout
from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.synth.compression import CompressedModel, Compression, cell_variance, equal_mass_groups
from cleanroom.synth.estimation import EstimationConfig, estimate
from cleanroom.synth.model import FloatArray, GraphicalModel
from cleanroom.synth.mst import candidate_pairs, leading_one_ways, project_to_one_ways, round_spec
from cleanroom.synth.selection import (
    PairError,
    best_gain_set,
    coarse_residual_score,
    fits,
    model_tables,
    noise_error,
    residual_score,
    structure,
)

ROUND_KINDS = frozenset({"target", "gain", "structure", "forest"})


@dataclass(frozen=True)
class _History:
    """Released measurements cut into rounds (after the 1-ways), with the compression decided from those."""

    one_way: list[Measurement]
    rounds: list[list[Measurement]]
    compression: Compression
    n_screens: int

    @property
    def screen(self) -> list[Measurement]:
        return [m for batch in self.rounds[: self.n_screens] for m in batch]

    @property
    def refined(self) -> list[list[Measurement]]:
        return self.rounds[self.n_screens :]


@dataclass(frozen=True)
class AdaptivePlanner:
    """Plans the adaptive rounds for `domain` within `rho_total` (zCDP) and fits the final model."""

    domain: Domain
    rho_total: float
    target: str | None = None
    one_way_share: float = 0.15
    target_screen_share: float = 0.1
    screen_share: float = 0.3
    refine_rounds: tuple[str, ...] = ("target", "gain")
    refine_weights: tuple[float, ...] = (1.0, 2.0)
    target_weight: float = 1.0
    screen_z: float = 2.0
    target_z: float = 0.0
    noise_penalty: float = 1.0
    structure_pairs: float = 2.0
    max_pair_cells: int = 100_000
    max_clique_cells: int = 30_000
    max_total_cells: int = 150_000
    compress_z: float = 3.0
    target_levels: int = 0
    lead_pair: bool = True
    screen_levels: int = 5
    screen_cliques: bool = False
    estimation: EstimationConfig = field(default_factory=lambda: EstimationConfig(max_iters=250))
    selection_estimation: EstimationConfig = field(default_factory=lambda: EstimationConfig(max_iters=100))
    n_min: int = 1
    n_parties: int | None = None
    colluders: int = 0
    noise_shares: int = 1
    special_levels: Mapping[str, tuple[int, ...]] = field(default_factory=dict, hash=False)
    ordinal: frozenset[str] = frozenset()
    _cache: dict[int, tuple[str, RoundSpec | None]] = field(
        default_factory=dict, compare=False, repr=False, hash=False
    )

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rho_total) and self.rho_total > 0):
            raise InvalidInput(f"rho_total ({self.rho_total}) must be finite and > 0")
        shares = (self.one_way_share, self.target_screen_share, self.screen_share)
        if not (
            0 < self.one_way_share < 1 and 0 <= self.target_screen_share < 1 and 0 < self.screen_share < 1
        ):
            raise InvalidInput(f"one-way, target screen and screen shares {shares} must be in (0, 1)")
        if sum(shares) >= 1:
            raise InvalidInput(f"shares {shares} must leave a part of rho for the refinement rounds")
        if not self.refine_weights or any(not (w > 0 and math.isfinite(w)) for w in self.refine_weights):
            raise InvalidInput(f"refine_weights {self.refine_weights} must be one or more positive numbers")
        if len(self.refine_rounds) != len(self.refine_weights) or not set(self.refine_rounds) <= ROUND_KINDS:
            raise InvalidInput(
                f"refine_rounds {self.refine_rounds} must name one of {sorted(ROUND_KINDS)} per refine weight"
            )
        if min(self.max_pair_cells, self.max_clique_cells, self.max_total_cells) < 1:
            raise InvalidInput("max_pair_cells, max_clique_cells and max_total_cells must be >= 1")
        if self.target is not None and self.target not in self.domain:
            raise InvalidInput(f"target {self.target!r} is not an attribute of the domain")
        numbers = (self.target_weight, self.screen_z, self.target_z, self.noise_penalty, self.compress_z)
        if not all(math.isfinite(x) and x >= 0 for x in numbers) or not self.structure_pairs > 0:
            raise InvalidInput(
                "target_weight, screen_z, target_z, noise_penalty and compress_z must be >= 0 and"
                f" structure_pairs ({self.structure_pairs}) > 0"
            )
        if not 1 <= self.n_min <= (self.n_parties or self.n_min):
            raise InvalidInput(f"n_min ({self.n_min}) must be in [1, n_parties ({self.n_parties})]")
        _ = self.layout  # validates colluders and noise_shares
        for name, levels in (("target_levels", self.target_levels), ("screen_levels", self.screen_levels)):
            if levels != 0 and levels < 2:
                raise InvalidInput(f"{name} ({levels}) must be 0 (off) or >= 2")

    # ------------------------------------------------------------------------------------------ rounds
    @property
    def layout(self) -> NoiseLayout:
        return NoiseLayout(self.n_parties or self.n_min, self.n_min, self.colluders, self.noise_shares)

    def _spec(self, name: str, cliques: Sequence[Clique], rho: float) -> RoundSpec:
        return round_spec(self.domain, name, cliques, rho, self.layout)

    def compression(self, one_way: Sequence[Measurement]) -> Compression:
        """The compressed domain decided from the 1-way tables (post-processing)."""
        if self.compress_z == 0:
            return Compression.identity(self.domain)
        limits = {self.target: self.target_levels} if self.target and self.target_levels else {}
        return Compression.from_one_ways(
            self.domain, one_way, self.compress_z, self.special_levels, self.ordinal, limits
        )

    def candidate_pairs(self) -> tuple[Clique, ...]:
        """Pairs of attributes with > 1 level whose table has <= max_pair_cells cells (data-independent)."""
        return candidate_pairs(self.domain, self.max_pair_cells)

    def _screens(self) -> list[tuple[str, tuple[Clique, ...], float]]:
        """The screen rounds: (name, pairs, share); the target's pairs first, on their own, if asked."""
        candidates = self.candidate_pairs()
        if self.target is None or self.target_screen_share == 0:
            return [("screen", candidates, self.screen_share)] if candidates else []
        on_target = tuple(p for p in candidates if self.target in p)
        others = tuple(p for p in candidates if self.target not in p)
        screens = [("screen-target", on_target, self.target_screen_share)] if on_target else []
        return screens + ([("screen", others, self.screen_share)] if others else [])

    def round_sizes(self) -> tuple[tuple[str, int, float], ...]:
        """(name, fewest tables, share of rho_total) of every round, known before any measurement.

        A refinement round may hold a single table, so its entry says 1: the noise floor (every party's
        sigma >= 2) must hold for the fewest tables a round can have.
        """
        screens = self._screens()
        if not screens:
            return (("one-way", len(self.domain), 1.0),)
        rounds = [("one-way", len(self.domain), self.one_way_share)]
        rounds += [(name, len(pairs), share) for name, pairs, share in screens]
        rounds += [
            (f"refine-{i + 1}-{kind}", 1, self._refine_share(i)) for i, kind in enumerate(self.refine_rounds)
        ]
        return tuple(rounds)

    def fixed_round_sizes(self) -> tuple[tuple[str, int, float], ...]:
        """The rounds whose number of tables the schema fixes: the 1-way and screen rounds. A refinement
        round holds 1 to all candidate pairs, chosen from the data; if it holds so few that its share would
        need sigma < 2, calibration keeps sigma at 2 and the parties charge the smaller realised rho."""
        return self.round_sizes()[: 1 + len(self._screens())]

    def _refine_share(self, index: int) -> float:
        screened = sum(share for _, _, share in self._screens())
        rest = 1.0 - self.one_way_share - screened
        return rest * self.refine_weights[index] / sum(self.refine_weights)

    def first_round(self) -> RoundSpec:
        share = self.one_way_share if self._screens() else 1.0
        return self._spec("one-way", [(a,) for a in self.domain.attrs], self.rho_total * share)

    def next_round(self, measurements: Sequence[Measurement]) -> RoundSpec | None:
        """The next round given every measurement released so far, in round order (None when done)."""
        history, spent = self._replay(measurements)
        return self._cached_plan(history, spent)

    def _cached_plan(self, history: _History, spent: float) -> RoundSpec | None:
        key = _digest(history)
        cached = self._cache.get(len(history.rounds))
        if cached is not None and cached[0] == key:
            return cached[1]
        spec = self._plan(history, spent)
        self._cache[len(history.rounds)] = (key, spec)
        return spec

    def _plan(self, history: _History, spent: float) -> RoundSpec | None:
        left = self.rho_total - spent
        screens = self._screens()
        if len(history.rounds) < len(screens):
            name, pairs, share = screens[len(history.rounds)]
            return self._spec(name, pairs, min(self.rho_total * share, left))
        index = len(history.refined)
        if not screens or index >= len(self.refine_rounds):
            return None
        last = index == len(self.refine_rounds) - 1
        rho = left if last else min(self.rho_total * self._refine_share(index), left)
        if not rho > 0:
            return None
        kind = self.refine_rounds[index]
        if kind == "target" and self.target is None:
            kind = "forest"
        chosen = self._select(history, kind, rho)
        return self._spec(f"refine-{index + 1}-{kind}", chosen, rho) if chosen else None

    def _replay(self, measurements: Sequence[Measurement]) -> tuple[_History, float]:
        """Cut `measurements` into the rounds this planner planned (checking each) and their planned rho."""
        one_way = leading_one_ways(self.domain, measurements, "AdaptivePlanner")
        n_one = len(one_way)
        history = _History(one_way, [], self.compression(one_way), len(self._screens()))
        spent, position = self.first_round().rho, n_one
        while position < len(measurements):
            spec = self._cached_plan(history, spent)
            if spec is None:
                raise InvalidInput("AdaptivePlanner: more measurements than the rounds planned")
            batch = list(measurements[position : position + len(spec.cliques)])
            if [m.clique for m in batch] != list(spec.cliques):
                raise InvalidInput(
                    f"AdaptivePlanner: measurements of round {spec.name!r} differ from its plan"
                )
            history = _History(one_way, [*history.rounds, batch], history.compression, history.n_screens)
            position += len(batch)
            spent += spec.rho
        return history, spent

    # ------------------------------------------------------------------------------------------ selection
    def _sigma2(self, n_tables: int, rho: float) -> float:
        """Per-cell noise variance in the sum if a round of `n_tables` spends `rho` (every party survives
        and keeps the draws `NoiseLayout.kept` leaves it)."""
        return n_tables / (2 * rho) * self.layout.spread()

    def _errors(self, history: _History, model: GraphicalModel, target_only: bool) -> dict[Clique, PairError]:
        compression = history.compression
        screen = [compression.project(m) for m in history.screen]
        if target_only:
            screen = [m for m in screen if self.target in m.clique]
        fitted = model_tables(model, [m.clique for m in screen], selection_rows(model))
        variance: dict[Clique, FloatArray] = {}
        for batch in history.refined:
            for m in batch:
                inverse = 1 / variance[m.clique] if m.clique in variance else 0.0
                variance[m.clique] = 1 / (inverse + 1 / np.asarray(cell_variance(compression.project(m))))
        merge = self._coarse_levels(history) if self.screen_levels else {}
        errors = {}
        for m in screen:
            expected = np.maximum(fitted[m.clique], 0.0)
            on_target = self.target in m.clique
            if m.clique in variance:  # measured precisely: the model is as good as that noise allows
                error = noise_error(expected, variance[m.clique], self.noise_penalty)
            else:
                z = self.target_z if on_target else self.screen_z
                error = residual_score(m, fitted[m.clique], z)
                if merge:
                    error = max(error, coarse_residual_score(m, fitted[m.clique], merge, z))
            weight = 1.0 + (self.target_weight if on_target else 0.0)
            errors[m.clique] = PairError(expected, variance.get(m.clique, math.inf), error, weight)
        return errors

    def _coarse_levels(self, history: _History) -> dict[str, FloatArray]:
        """Per ordinal attribute with more than `screen_levels` compressed levels, the 0/1 matrix joining
        neighbouring levels into `screen_levels` of about equal noisy mass (from the released 1-ways)."""
        compression = history.compression
        merge: dict[str, FloatArray] = {}
        for m in history.one_way:
            attr = m.clique[0]
            counts = np.asarray(compression.project(m).noisy_values, dtype=np.float64)
            if attr not in self.ordinal or counts.size <= self.screen_levels:
                continue
            groups = equal_mass_groups(counts, self.screen_levels)
            matrix = np.zeros((len(groups), counts.size))
            for k, group in enumerate(groups):
                matrix[k, list(group)] = 1.0
            merge[attr] = matrix
        return merge

    def _select(self, history: _History, kind: str, rho: float) -> list[Clique]:
        compression = history.compression
        small = compression.compressed
        precise = [compression.project(m) for m in history.one_way]
        precise += [compression.project(m) for batch in history.refined for m in batch]
        model = estimate(small, precise, self.selection_estimation)
        in_model = [m.clique for batch in history.refined for m in batch]

        known: dict[frozenset[Clique], bool] = {}  # the greedy sets of different sizes share prefixes

        def fits_model(pairs: Sequence[Clique]) -> bool:
            key = frozenset(pairs)
            if key not in known:
                known[key] = fits(small, [*in_model, *pairs], self.max_clique_cells, self.max_total_cells)
            return known[key]

        errors = self._errors(history, model, target_only=kind == "target")
        if kind in ("target", "gain"):
            return best_gain_set(
                errors,
                lambda k: self._sigma2(k, rho),
                fits_model,
                self.noise_penalty,
                lead=kind == "target" and self.lead_pair,
            )
        fresh = {p: e for p, e in errors.items() if p not in set(in_model)}
        informative = {a for p in errors for a in p}
        limit = max(1, round(self.structure_pairs * max(len(informative) - 1, 1)))
        return structure(small, fresh, limit, fits_model, extra=kind == "structure")

    # ------------------------------------------------------------------------------------------ estimation
    def estimate(self, measurements: Sequence[Measurement]) -> CompressedModel:
        """Fit the model to every release (screens summed to 1-ways unless they join as cliques)."""
        if not measurements:
            raise InvalidInput("AdaptivePlanner.estimate: no measurements")
        history, _ = self._replay(measurements)
        compression = history.compression
        small = compression.compressed
        kept = [compression.project(m) for m in history.one_way]
        kept += [compression.project(m) for batch in history.refined for m in batch]
        cliques = [m.clique for m in kept if len(m.clique) > 1]
        screen = [compression.project(m) for m in history.screen]
        scores: dict[Clique, float] = {}
        if screen and self.screen_cliques:
            base = estimate(small, kept, self.selection_estimation)
            fitted = model_tables(base, [m.clique for m in screen], selection_rows(base))
            scores = {m.clique: residual_score(m, fitted[m.clique], self.screen_z) for m in screen}
        for m in sorted(screen, key=lambda m: (-scores.get(m.clique, 0.0), m.clique)):
            if m.clique in cliques or (
                scores.get(m.clique, 0.0) > 0
                and fits(small, [*cliques, m.clique], self.max_clique_cells, self.max_total_cells)
            ):
                kept.append(m)
                cliques.append(m.clique)
            else:
                kept.extend(project_to_one_ways(m))
        return CompressedModel(estimate(small, kept, self.estimation), compression)


def selection_rows(model: GraphicalModel) -> int:
    """Rows sampled to read a model's pair tables outside its cliques: 4x its total, within [5e4, 4e5]."""
    return int(min(max(4 * model.total, 50_000), 400_000))


def _digest(history: _History) -> str:
    digest = hashlib.sha256()
    for m in [*history.one_way, *(m for batch in history.rounds for m in batch)]:
        digest.update(repr(m.clique).encode())
        digest.update(np.ascontiguousarray(m.noisy_values).tobytes())
    return digest.hexdigest()
