"""Federated MST planner: rounds, budget split, selection from noisy aggregates, end to end."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from synth_helpers import TREE_DOMAIN, TREE_EDGES, count, run_rounds, tree_data

from cleanroom.domain import Domain
from cleanroom.encoding import decode, encode
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.sample_data import generate, sample_schema
from cleanroom.synth import MSTPlanner, synthesize, synthesize_dp
from cleanroom.synth.centralised import measure_round
from cleanroom.synth.mst import project_to_one_ways


@pytest.mark.parametrize("rho", [1e6, 50.0])
def test_selection_recovers_the_true_tree(rho: float) -> None:
    codes = tree_data(np.random.default_rng(2), 5000)
    planner = MSTPlanner(TREE_DOMAIN, rho)
    specs, _ = run_rounds(planner, TREE_DOMAIN, codes, np.random.default_rng(3))
    assert [s.name for s in specs] == ["one-way", "candidates", "tree"]
    assert {tuple(sorted(c)) for c in specs[2].cliques} == TREE_EDGES


def test_round_budgets_sum_to_total_and_sigma_is_calibrated() -> None:
    codes = tree_data(np.random.default_rng(4), 500)
    rho = 0.3
    specs, _ = run_rounds(MSTPlanner(TREE_DOMAIN, rho), TREE_DOMAIN, codes, np.random.default_rng(5))
    assert [len(s.cliques) for s in specs] == [5, 10, 4]
    for spec in specs:
        assert isinstance(spec.sigma_total2, Fraction)
        assert spec.rho == pytest.approx(len(spec.cliques) / (2 * float(spec.sigma_total2)), rel=1e-9)
        assert spec.rho <= rho / 3
    total = sum(s.rho for s in specs)
    assert rho * (1 - 1e-3) <= total <= rho


def test_distributed_calibration_splits_noise_over_honest_parties() -> None:
    central = MSTPlanner(TREE_DOMAIN, 0.3).first_round()
    federated = MSTPlanner(TREE_DOMAIN, 0.3, n_min=3, n_parties=5).first_round()
    # the sum of n_min honest shares must carry the same total noise, each party a third of it
    assert float(federated.sigma_total2) == pytest.approx(float(central.sigma_total2), rel=1e-3)
    assert federated.sigma_total2 / 3 >= 4  # sigma_party >= 2
    assert federated.rho <= 0.1
    with pytest.raises(InvalidInput, match="n_min"):
        MSTPlanner(TREE_DOMAIN, 0.3, n_min=6, n_parties=5)
    tiny_noise = MSTPlanner(TREE_DOMAIN, 1e6, n_min=2).first_round()
    assert tiny_noise.sigma_total2 >= 8  # floor sigma_party2 = 4 per honest share


def test_next_round_rejects_measurements_out_of_order() -> None:
    planner = MSTPlanner(TREE_DOMAIN, 1.0)
    ones = [Measurement((a,), np.full(TREE_DOMAIN.size(a), 100.0), 1.0) for a in TREE_DOMAIN.attrs]
    with pytest.raises(InvalidInput, match="1-way"):
        planner.next_round(ones[::-1])
    wrong_pair = Measurement(("a", "c"), np.zeros((3, 2)), 1.0)
    with pytest.raises(InvalidInput, match="candidate pairs"):
        planner.next_round(ones + [wrong_pair] * 10)
    with pytest.raises(InvalidInput, match="shape"):
        planner.next_round(ones[:-1] + [Measurement(("e",), np.zeros(4), 1.0)])


def test_single_level_attributes_and_pair_cap() -> None:
    domain = Domain(("a", "one", "big", "b"), (3, 1, 50, 2))
    planner = MSTPlanner(domain, 1.0, max_pair_cells=150)
    assert planner.candidate_pairs() == (("a", "big"), ("a", "b"), ("big", "b"))
    capped = MSTPlanner(domain, 1.0, max_pair_cells=10)
    assert capped.candidate_pairs() == (("a", "b"),)
    only_one = MSTPlanner(Domain(("x", "one"), (4, 1)), 0.1)
    spec = only_one.first_round()
    assert spec.rho == pytest.approx(0.1, rel=1e-3)  # no pairs: the whole budget goes to the 1-ways
    codes = np.array([[0, 0], [3, 0], [3, 0]])
    measurements = measure_round(codes, only_one.domain, spec, np.random.default_rng(0))
    assert only_one.next_round(measurements) is None
    assert only_one.estimate(measurements).sample(10, np.random.default_rng(1)).shape == (10, 2)


def test_projection_to_one_ways_sums_cells_and_scales_noise() -> None:
    m = Measurement(("a", "b"), np.arange(12.0).reshape(3, 4), 2.0)
    a, b = project_to_one_ways(m)
    np.testing.assert_allclose(a.noisy_values, [6, 22, 38])
    assert a.stddev == pytest.approx(4.0) and b.stddev == pytest.approx(2.0 * np.sqrt(3))


def test_estimate_uses_every_round_and_fits_the_data() -> None:
    codes = tree_data(np.random.default_rng(6), 20000)
    planner = MSTPlanner(TREE_DOMAIN, 5.0)
    _, measurements = run_rounds(planner, TREE_DOMAIN, codes, np.random.default_rng(7))
    model = planner.estimate(measurements)
    for a, b in sorted(TREE_EDGES):
        truth = count(codes, TREE_DOMAIN, (a, b))
        assert 0.5 * np.abs(model.marginal((a, b)) - truth).sum() / len(codes) < 0.02


def test_synthesize_end_to_end_preserves_dependencies() -> None:
    codes = tree_data(np.random.default_rng(8), 10000)
    synthetic = synthesize(TREE_DOMAIN, codes, 2.0, 8000, np.random.default_rng(9))
    assert synthetic.shape == (8000, 5)
    assert synthetic.min() >= 0 and np.all(synthetic.max(axis=0) < np.array(TREE_DOMAIN.shape))
    for clique in [("a", "b"), ("d", "e"), ("b", "c")]:
        p = count(codes, TREE_DOMAIN, clique) / len(codes)
        q = count(synthetic, TREE_DOMAIN, clique) / len(synthetic)
        assert 0.5 * np.abs(p - q).sum() < 0.05
    with pytest.raises(InvalidInput, match="outside the domain"):
        synthesize(TREE_DOMAIN, codes + 10, 2.0, 10, np.random.default_rng(0))


def test_extra_pairs_respect_the_model_caps() -> None:
    codes = tree_data(np.random.default_rng(10), 5000)
    rng = np.random.default_rng(11)
    for cells, total, biggest in [(0, 0, 20), (40, 10_000, 40), (10_000, 10_000, 10_000)]:
        planner = MSTPlanner(TREE_DOMAIN, 50.0, extra_clique_cells=cells, extra_total_cells=total)
        _, measurements = run_rounds(planner, TREE_DOMAIN, codes, rng)
        model = planner.estimate(measurements)
        sizes = [TREE_DOMAIN.project(c).size() for c in model.tree.cliques]
        assert max(sizes) <= biggest
        if cells == 0:
            assert all(len(c) <= 2 for c in model.tree.cliques) and len(model.tree.cliques) == 4
        else:
            assert len(model.tree.cliques) < 4 or max(len(c) for c in model.tree.cliques) > 2


def _residual(m: Measurement, codes: np.ndarray) -> np.ndarray:
    return (m.noisy_values - count(codes, TREE_DOMAIN, m.clique)).ravel()


def test_exact_discrete_noise_path_and_dp_wrapper() -> None:
    codes = tree_data(np.random.default_rng(12), 3000)
    spec = RoundSpec("wide", (("a", "b", "d", "e"), ("c",)), Fraction(400), 0.1)
    noisy = measure_round(codes, TREE_DOMAIN, spec, np.random.default_rng(0), exact_noise=True)
    residuals = np.concatenate([_residual(m, codes) for m in noisy])
    assert residuals.size == 182 and np.all(residuals == np.round(residuals))  # integer noise
    # OS randomness, so a loose bound: P(chi2_182 outside [91, 364]) is far below 1e-9
    assert 200 < np.var(residuals) < 800
    synthetic = synthesize_dp(TREE_DOMAIN, codes, 5.0, 1e-6, 500, np.random.default_rng(1))
    assert synthetic.shape == (500, 5) and np.all(synthetic.max(axis=0) < np.array(TREE_DOMAIN.shape))


def test_synthesize_accepts_a_schema_and_output_decodes() -> None:
    schema = sample_schema()
    encoded = encode(schema, generate(3000, seed=3), source="sample")
    rng = np.random.default_rng(13)
    synthetic = synthesize(schema, encoded.codes, 1.0, 400, rng, exact_noise=False)
    assert synthetic.shape == (400, len(schema.domain))
    decoded = decode(schema, synthetic, rng)
    assert list(decoded.columns) == list(schema.names) and len(decoded) == 400
