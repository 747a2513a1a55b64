"""Selection from noisy screens (issue 11): the coarsened residual estimate, AIM's gain rule with the target's
strongest pair always in, equal-mass level groups, and stratified sampling (fixed seeds, statistical)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synth_helpers import TREE_DOMAIN, TREE_EDGES, count, run_rounds, tree_data

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement
from cleanroom.synth import AdaptivePlanner, estimate
from cleanroom.synth.compression import CellMeasurement, equal_mass_groups, level_map
from cleanroom.synth.model import stratified_uniforms
from cleanroom.synth.selection import (
    PairError,
    best_gain_set,
    coarse_residual_score,
    noise_error,
    residual_score,
)


def _smooth_pair(rng: np.random.Generator, n: int, strength: float) -> np.ndarray:
    """A 24 x 15 table whose second (ordinal) attribute shifts smoothly with the first: a weak, spread-out
    dependence like bike sharing's hour x count."""
    hour = rng.integers(0, 24, n)
    shift = strength * np.sin(2 * np.pi * hour / 24)
    level = np.clip(np.rint(7 + 4 * shift + rng.normal(0, 3, n)), 0, 14).astype(np.int64)
    table = np.zeros((24, 15))
    np.add.at(table, (hour, level), 1.0)
    return table


def _merge(levels: int, counts: np.ndarray) -> dict[str, np.ndarray]:
    matrix = np.zeros((levels, counts.size))
    for k, group in enumerate(equal_mass_groups(counts, levels)):
        matrix[k, list(group)] = 1.0
    return {"y": matrix}


def test_coarse_residual_finds_a_spread_dependence_the_cell_estimate_misses() -> None:
    rng = np.random.default_rng(0)
    sd, n = 60.0, 12000
    found_fine = found_coarse = false_alarms = 0
    for _ in range(20):
        truth = _smooth_pair(rng, n, 1.0)
        independent = np.outer(truth.sum(axis=1), truth.sum(axis=0)) / n
        noisy = Measurement(("x", "y"), truth + rng.normal(0, sd, truth.shape), sd)
        merge = _merge(5, truth.sum(axis=0))
        found_fine += residual_score(noisy, independent, 2.0) > 0
        found_coarse += coarse_residual_score(noisy, independent, merge, 2.0) > 0
        null = Measurement(("x", "y"), independent + rng.normal(0, sd, truth.shape), sd)
        false_alarms += coarse_residual_score(null, independent, merge, 2.0) > 0
    assert found_coarse >= 17 and found_fine <= 14, (found_coarse, found_fine)
    assert false_alarms <= 2


def _merged_level_pair(rng: np.random.Generator, n: int, depend: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 6 x 5 table like credit default's pay_0 x pay_2 on a compressed domain: the last level of each
    attribute merges 8 rare levels, so its cells carry 8 (64 in the corner) times the noise variance."""
    first = rng.choice(6, n, p=[0.05, 0.15, 0.5, 0.15, 0.1, 0.05])
    second = np.where(rng.random(n) < 0.7, np.minimum(first, 3), rng.choice(5, n)) if depend else None
    second = rng.choice(5, n, p=[0.1, 0.2, 0.5, 0.15, 0.05]) if second is None else second
    table = np.zeros((6, 5))
    np.add.at(table, (first, second), 1.0)
    scale = np.ones((6, 5))
    scale[-1, :] *= 8
    scale[:, -1] *= 8
    return table, scale


def test_merged_levels_do_not_drown_a_strong_pair_nor_pass_noise_for_one() -> None:
    rng = np.random.default_rng(4)
    sd, n = 400.0, 20000
    found_plain = found_weighted = false_plain = false_weighted = 0
    for _ in range(200):
        truth, scale = _merged_level_pair(rng, n, depend=True)
        independent = np.outer(truth.sum(axis=1), truth.sum(axis=0)) / n
        noise = rng.normal(0, sd, truth.shape) * np.sqrt(scale)
        noisy = CellMeasurement(("x", "y"), truth + noise, sd, cell_variance=scale * sd**2)
        found_plain += residual_score(noisy, independent, 2.0, weighted=False) > 0
        found_weighted += residual_score(noisy, independent, 2.0) > 0
        null = CellMeasurement(("x", "y"), independent + noise, sd, cell_variance=scale * sd**2)
        false_plain += residual_score(null, independent, 2.0, weighted=False) > 0
        false_weighted += residual_score(null, independent, 2.0) > 0
    assert found_weighted >= 190 and found_plain <= 120, (found_weighted, found_plain)
    assert false_weighted <= 12, false_weighted  # z = 2: about 2.3 % of 200 when the statistic is Gaussian


def test_the_weighted_residual_is_the_plain_one_when_every_cell_has_the_same_noise() -> None:
    rng = np.random.default_rng(5)
    truth, _ = _merged_level_pair(rng, 5000, depend=True)
    independent = np.outer(truth.sum(axis=1), truth.sum(axis=0)) / 5000
    noisy = Measurement(("x", "y"), truth + rng.normal(0, 30, truth.shape), 30.0)
    assert residual_score(noisy, independent, 1.0) == pytest.approx(
        residual_score(noisy, independent, 1.0, weighted=False), rel=1e-12
    )
    assert residual_score(noisy, independent, 1.0) > 0


def _error(error: float, cells: int, weight: float = 1.0) -> PairError:
    return PairError(np.full(cells, 50.0), math.inf, error, weight)


def test_the_target_round_always_measures_the_pair_it_misses_most() -> None:
    # many small tables with a modest error each, and one big table with the largest error: by total gain
    # the small ones win; with `lead` the big one (the target's strongest dependency) is measured too
    errors = {(f"a{i}", "t"): _error(600.0, 4) for i in range(8)}
    errors[("h", "t")] = _error(5000.0, 360)

    def sigma2(k: int) -> float:
        return 400.0 * k

    plain = best_gain_set(errors, sigma2, lambda pairs: True)
    led = best_gain_set(errors, sigma2, lambda pairs: True, lead=True)
    assert ("h", "t") not in plain
    assert led[0] == ("h", "t") and len(set(plain) & set(led)) >= len(led) - 1


def test_equal_mass_groups_are_neighbouring_runs_of_similar_mass() -> None:
    counts = np.array([5.0, 300, 310, 20, 15, 330, 5, 5, -3, 290, 40])
    groups = equal_mass_groups(counts, 4)
    assert [level for g in groups for level in g] == list(range(counts.size))  # contiguous, in order
    assert len(groups) == 4
    masses = [float(np.maximum(counts[list(g)], 0).sum()) for g in groups]
    assert max(masses) < 2.2 * min(masses), masses
    assert equal_mass_groups(counts, 20) == [(i,) for i in range(counts.size)]


def test_a_target_level_cap_merges_neighbouring_bins_and_keeps_reserved_levels_apart() -> None:
    counts = np.array([400.0, 500, 450, 480, 520, 510, 490, 300, 0.5])  # last: the reserved missing level
    capped = level_map(counts, 10.0, 3.0, special=(8,), ordinal=True, max_levels=4)
    assert len(capped.groups) <= 4 and (8,) not in capped.groups  # the empty missing level is dropped
    assert all(list(g) == list(range(g[0], g[-1] + 1)) for g in capped.groups)
    assert level_map(counts, 10.0, 3.0, special=(8,), ordinal=True).groups == tuple((i,) for i in range(8))


def test_stratified_uniforms_put_one_draw_in_each_stratum_of_every_group() -> None:
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 5, 1000)
    u = stratified_uniforms(groups, rng)
    assert u.min() >= 0 and u.max() < 1
    for g in range(5):
        values = np.sort(u[groups == g])
        m = values.size
        np.testing.assert_array_equal(np.floor(values * m), np.arange(m))


def test_sampled_clique_counts_are_within_one_of_the_model() -> None:
    codes = tree_data(np.random.default_rng(2), 4000)
    cliques = sorted(TREE_EDGES)
    model = estimate(TREE_DOMAIN, [Measurement(c, count(codes, TREE_DOMAIN, c), 1.0) for c in cliques])
    n = 10000
    sample = model.sample(n, np.random.default_rng(3))
    root = model.tree.order[0]
    clique = model.tree.cliques[root]
    expected = model.marginals()[root] / model.total * n
    # independent draws would miss by about sqrt(expected) (tens of rows); stratified ones by under one
    assert np.abs(count(sample, TREE_DOMAIN, clique) - expected).max() < 1.0 + 1e-9
    for node in model.tree.order[1:]:
        clique = model.tree.cliques[node]
        expected = model.marginals()[node] / model.total * n
        assert np.abs(count(sample, TREE_DOMAIN, clique) - expected).max() < 0.02 * n


def test_the_default_gain_round_finds_the_true_tree() -> None:
    codes = tree_data(np.random.default_rng(3), 20000)
    planner = AdaptivePlanner(TREE_DOMAIN, 5.0, target="e")
    specs, measurements = run_rounds(planner, TREE_DOMAIN, codes, np.random.default_rng(4))
    assert [s.name for s in specs][-2:] == ["refine-1-target", "refine-2-gain"]
    found = {tuple(sorted(c)) for s in specs[-2:] for c in s.cliques}
    assert found >= TREE_EDGES
    model = planner.estimate(measurements)
    for a, b in sorted(TREE_EDGES):
        truth = count(codes, TREE_DOMAIN, (a, b))
        assert 0.5 * np.abs(model.marginal((a, b)) - truth).sum() / len(codes) < 0.02


@pytest.mark.parametrize("setting", [{"target_levels": 1}, {"screen_levels": -1}, {"screen_levels": 1}])
def test_level_caps_are_validated(setting: dict) -> None:
    with pytest.raises(InvalidInput, match="must be 0 \\(off\\) or >= 2"):
        AdaptivePlanner(TREE_DOMAIN, 1.0, **setting)


def test_a_pair_over_merged_rare_levels_is_found_by_the_planner() -> None:
    # x and y: 4 common levels and 12 rare ones each (merged into one compressed level at this budget, so
    # those cells carry 12 and 144 times the noise); y copies x on the common levels; z1, z2 are noise
    rng = np.random.default_rng(6)
    n = 20000
    weights = np.r_[np.full(4, 0.24), np.full(12, 0.04 / 12)]
    x = rng.choice(16, n, p=weights)
    y = np.where((x < 4) & (rng.random(n) < 0.9), x, rng.choice(16, n, p=weights))
    codes = np.stack([x, y, rng.integers(0, 8, n), rng.integers(0, 8, n)], axis=1)
    domain = Domain(("x", "y", "z1", "z2"), (16, 16, 8, 8))
    planner = AdaptivePlanner(domain, 3e-5, target_screen_share=0.0)
    specs, measurements = run_rounds(planner, domain, codes, rng)
    compressed = planner.compression(measurements[:4])
    assert compressed.compressed.size("x") == 5 and compressed.compressed.size("y") == 5
    refined = {c for s in specs[2:] for c in s.cliques}
    assert ("x", "y") in refined, [s.cliques for s in specs[2:]]


def test_the_noise_left_in_a_measured_table_counts_each_cell_at_its_own_variance() -> None:
    # a table on a compressed domain: the last column merges 9 released cells, so it has 9x the variance
    expected = np.full((3, 4), 500.0)
    variance = np.full((3, 4), 100.0)
    variance[:, -1] = 900.0
    per_cell = noise_error(expected, variance)
    assert per_cell == pytest.approx(math.sqrt(2 / math.pi) * (9 * 10.0 + 3 * 30.0))
    assert per_cell < 0.75 * noise_error(expected, float(variance.max()))  # the old rule: max variance
    assert noise_error(expected, np.full((3, 4), math.inf)) == math.inf
