"""Choosing which marginals to measure next, from released noisy tables only (post-processing).

The adaptive planner (`cleanroom.synth.adaptive`) scores every pair of attributes by how badly its current
model explains the pair's cheap "screen" table, then picks the pairs worth measuring precisely:

- `residual_score`: an estimate of ||x - mu||_1 (true table x, model table mu) from a noisy table y.
  ||y - mu||_2^2 - sum of cell variances is unbiased for ||x - mu||_2^2 when the noise of y is independent
  of mu (the model is fitted without the screens); `z` standard deviations of that statistic under "no
  difference" (sqrt(2 sum variance^2)) are subtracted so that noise rarely passes for a difference. The L1
  distance is then sqrt(that * c_eff), c_eff = (sum mu)^2 / sum mu^2 (the cells holding the model's mass).
  MST's correction (subtract the expected L1 norm of the noise) underestimates differences smaller than the
  noise, the usual case for a cheap screen, by a factor 3 to 5 on the benchmark suite.
  On a compressed domain a cell that merges k rare levels carries k times the noise variance of the others
  and little mass; counted plainly, a few such cells drown the statistic (credit default at epsilon 0.3:
  the pay_0 x pay_2 screen, true L1 23,000, scored 0, while a pair with true L1 700 scored 12,000). So each
  cell's term is weighted by v_min / v_cell: the statistic then estimates sum w d^2 <= ||x - mu||_2^2, a
  lower bound, with null standard deviation sqrt(2 sum (w v)^2) = v_min sqrt(2 cells). With equal
  variances (no merged level) this is the plain estimate.
- `noise_error`: what a table measured with per-cell noise variance v still misses after fitting, about
  sum_cells min(mu_cell, sqrt(2/pi) sqrt(v_cell)): the noise, or the cell's count when the fit can clip it to
  zero. Each cell counts at its own variance: taking the table's largest (a merged cell's) for every cell
  overstated a measured pair's remaining error and re-measured it instead of a new pair (paired harness,
  epsilon 1, seeds 0-3: 2-way TVD adult 0.0352 -> 0.0348, credit 0.0975 -> 0.0953, bike 0.0702 -> 0.0691).
- `best_gain_set`: AIM's rule (McKenna et al. 2022: measure where w * (error - noise added) is largest)
  for a round whose noise depends on how many tables it holds: for each set size k the round's sigma_k is
  known, every pair's gain w * (error now - noise_error after) too, and the k whose greedy set gains most
  wins (a pair measured before gains only from the lower combined noise).
- `coarse_residual_score`: the same estimate on the table with neighbouring ordinal levels summed; summing
  adds a smooth difference up and the noise only in quadrature, so a dependence spread thinly over many cells
  (hour x count) stands out of the noise, and the L1 distance of summed tables never exceeds the original's.
  Its cells are not weighted: a run of many levels has more variance and, for a smooth difference, as much
  more signal (weighting them cost bike sharing's temperature x count pair its place, R^2 0.577 -> 0.539).
- `best_gain_set(lead=True)` puts the pair with the largest weighted error first whatever its gain.
- `structure`: MST's maximum spanning forest of the scores (McKenna, Miklau, Sheldon 2021), then the next
  best pairs up to a pair budget, while the model's junction tree stays within its cell caps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.marginals import count_table
from cleanroom.measurement import Measurement
from cleanroom.synth.compression import CellMeasurement, cell_variance
from cleanroom.synth.junction_tree import build_junction_tree, spanning_forest
from cleanroom.synth.model import FloatArray, GraphicalModel, sum_axes

SQRT_2_PI = math.sqrt(2 / math.pi)
SET_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


@dataclass(frozen=True)
class PairError:
    """What selection knows about one pair: the model's table, the noise it was measured with, its error."""

    expected: FloatArray  # the current model's count table (clipped at zero)
    variance: float | FloatArray  # noise variance per cell of the precise measurements so far (inf: none)
    error: float  # estimated L1 distance between the model's table and the truth
    weight: float  # workload weight (pairs with the target weigh more)


def model_tables(model: GraphicalModel, cliques: Sequence[Clique], rows: int) -> dict[Clique, FloatArray]:
    """The model's count tables of `cliques`: exact inside a junction-tree clique, else from `rows` samples.

    The sample is drawn with a fixed seed, so a planner replaying its rounds makes the same choices.
    """
    tables: dict[Clique, FloatArray] = {}
    sampled = []
    marginals = model.marginals()
    for clique in cliques:
        try:
            node = model.tree.containing(clique)
        except KeyError:
            sampled.append(clique)
            continue
        axes = sum_axes(model.tree.cliques[node], clique)
        tables[clique] = np.asarray(marginals[node].sum(axis=axes) if axes else marginals[node])
    if sampled:
        codes = model.sample(rows, np.random.default_rng(0))
        scale = model.total / rows
        for clique in sampled:
            tables[clique] = count_table(codes, model.domain, clique) * scale
    return tables


def residual_score(noisy: Measurement, fitted: FloatArray, z: float = 0.0, weighted: bool = True) -> float:
    """Estimated L1 distance between the true table and `fitted`, from a noisy table of it (see above).

    `weighted`: every cell's squared residual counts with weight v_min / v_cell (see above), so cells
    that merge many rare levels, whose noise is k times the others', do not drown the rest."""
    values = np.asarray(noisy.noisy_values)
    variance = np.broadcast_to(cell_variance(noisy), values.shape)
    weight = float(variance.min()) / variance if weighted else np.ones_like(variance)
    null_sd = math.sqrt(2 * float(np.sum((weight * variance) ** 2)))
    squared = float(np.sum(weight * ((values - fitted) ** 2 - variance))) - z * null_sd
    mass = np.maximum(fitted, 0.0)
    cells = float(mass.sum() ** 2 / max(float(np.sum(mass * mass)), 1e-12))
    return math.sqrt(max(squared, 0.0) * max(cells, 1.0))


def coarse_residual_score(
    noisy: Measurement, fitted: FloatArray, merge: Mapping[str, FloatArray], z: float = 0.0
) -> float:
    """`residual_score` of the table with neighbouring levels summed (`merge[attr]`: 0/1 matrix, coarse x
    fine levels, for the attributes to coarsen). Summing cells adds a smooth difference up and the noise only
    in quadrature, and the L1 distance of summed tables never exceeds the original's (triangle inequality),
    so this is a second, often much less noisy, estimate of the same lower bound."""
    values = np.asarray(noisy.noisy_values, dtype=np.float64)
    variance = np.broadcast_to(np.asarray(cell_variance(noisy), dtype=np.float64), values.shape)
    table = np.asarray(fitted, dtype=np.float64)
    for axis, attr in enumerate(noisy.clique):
        if attr not in merge:
            continue
        matrix = merge[attr]
        values, variance, table = (
            np.moveaxis(np.tensordot(matrix, t, axes=([1], [axis])), 0, axis)
            for t in (values, variance, table)
        )
    coarse = CellMeasurement(noisy.clique, values, math.sqrt(float(variance.max())), cell_variance=variance)
    return residual_score(coarse, table, z, weighted=False)


def noise_error(expected: FloatArray, variance: float | FloatArray, penalty: float = 1.0) -> float:
    """L1 error a fitted table keeps from noise of variance `variance` per cell (times `penalty`)."""
    if not np.all(np.isfinite(variance)):
        return math.inf
    return penalty * float(np.minimum(expected, SQRT_2_PI * np.sqrt(variance)).sum())


def fits(domain: Domain, cliques: Sequence[Clique], clique_cells: int, total_cells: int) -> bool:
    """Whether a model over `cliques` keeps its junction tree within the cell caps."""
    try:
        tree = build_junction_tree(domain, cliques, clique_cells)
    except InvalidInput:
        return False
    return sum(domain.project(c).size() for c in tree.cliques) <= total_cells


def spanning_tree(domain: Domain, scores: Mapping[Clique, float]) -> list[Clique]:
    """Maximum spanning tree (a forest if the pairs do not connect every attribute) over `scores`."""
    ranked = sorted(scores, key=lambda p: (-scores[p], p))
    return [(a, b) for a, b in spanning_forest(domain.attrs, ((p[0], p[1]) for p in ranked))]


Fits = Callable[[Sequence[Clique]], bool]


def best_gain_set(
    errors: Mapping[Clique, PairError],
    sigma2: Callable[[int], float],
    fits_model: Fits,
    penalty: float = 1.0,
    lead: bool = False,
) -> list[Clique]:
    """The set of pairs whose measurement in one round gains most in total (AIM's criterion, see above).

    `sigma2(k)` is the per-cell noise variance of a round of k tables; `fits_model(pairs)` whether the
    model can take `pairs` on top of its own. Falls back to the single pair with the largest error.
    """
    candidates = sorted(errors)
    best: list[Clique] = []
    best_total = -math.inf
    for k in [k for k in SET_SIZES if k <= len(candidates)] or [len(candidates)]:
        variance = sigma2(k)
        gain = {}
        for pair in candidates:
            e = errors[pair]
            combined = 1 / (1 / e.variance + 1 / variance)
            gain[pair] = e.weight * (e.error - noise_error(e.expected, combined, penalty))
        chosen: list[Clique] = []
        ranked = sorted(candidates, key=lambda p: (-gain[p], p))
        if lead:
            first = max(candidates, key=lambda p: (errors[p].weight * errors[p].error, p))
            ranked = [first] + [p for p in ranked if p != first]
            gain[first] = max(gain[first], 0.0) + 1e-9
        for pair in ranked:
            if len(chosen) == k or gain[pair] <= 0:
                break
            if fits_model([*chosen, pair]):
                chosen.append(pair)
        total = sum(gain[p] for p in chosen)
        if chosen and total > best_total:
            best, best_total = chosen, total
    if not best and candidates:
        best = [max(candidates, key=lambda p: (errors[p].weight * errors[p].error, p))]
    return best


def structure(
    domain: Domain, errors: Mapping[Clique, PairError], limit: int, fits_model: Fits, extra: bool = True
) -> list[Clique]:
    """A maximum spanning forest of the weighted errors, then (if `extra`) the next largest, up to `limit`."""
    scores = {p: e.weight * e.error for p, e in errors.items()}
    chosen: list[Clique] = []
    for pair in spanning_tree(domain, scores):
        if scores[pair] > 0 and fits_model([*chosen, pair]):
            chosen.append(pair)
    for pair in sorted(scores, key=lambda p: (-scores[p], p)) if extra else []:
        if len(chosen) >= limit or scores[pair] <= 0:
            break
        if pair not in chosen and fits_model([*chosen, pair]):
            chosen.append(pair)
    if not chosen and scores:
        chosen = [max(scores, key=lambda p: (scores[p], p))]
    return chosen
