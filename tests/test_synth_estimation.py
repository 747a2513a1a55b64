"""Estimation of a graphical model from marginal measurements: exactness, junction trees, non-negativity."""

from __future__ import annotations

import numpy as np
import pytest
from synth_helpers import TREE_DOMAIN, count, exact, tree_data

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement
from cleanroom.synth import EstimationConfig, build_junction_tree, estimate

RNG_SEED = 20260127


def _max_error(model_marginal: np.ndarray, target: np.ndarray) -> float:
    return float(np.abs(model_marginal - target).max())


def test_reproduces_noiseless_tree_measurements() -> None:
    codes = tree_data(np.random.default_rng(RNG_SEED), 4000)
    cliques = [("a", "b"), ("b", "c"), ("a", "d"), ("d", "e")] + [(x,) for x in TREE_DOMAIN.attrs]
    model = estimate(TREE_DOMAIN, exact(codes, TREE_DOMAIN, cliques))
    assert model.total == pytest.approx(4000)
    for clique in cliques:
        assert _max_error(model.marginal(clique), count(codes, TREE_DOMAIN, clique)) < 0.05


@pytest.mark.parametrize(
    "pairs",
    [
        [("a", "b"), ("b", "c"), ("a", "c")],  # triangle
        [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")],  # 4-cycle: needs a fill-in edge
    ],
)
def test_reproduces_noiseless_non_tree_measurements(pairs: list[tuple[str, str]]) -> None:
    domain = Domain(("a", "b", "c", "d"), (3, 4, 2, 3))
    rng = np.random.default_rng(RNG_SEED)
    n = 3000
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(0, 3, n)) % 4
    c = ((a + b) % 2) ^ (rng.random(n) < 0.2)
    d = (a + c + rng.integers(0, 2, n)) % 3
    codes = np.stack([a, b, c, d], axis=1)
    model = estimate(domain, exact(codes, domain, pairs), EstimationConfig(max_iters=3000))
    assert max(len(c) for c in model.tree.cliques) == 3
    for clique in pairs:
        assert _max_error(model.marginal(clique), count(codes, domain, clique)) < 0.5


def test_model_marginals_are_non_negative_and_consistent_under_heavy_noise() -> None:
    codes = tree_data(np.random.default_rng(RNG_SEED), 300)
    rng = np.random.default_rng(1)
    cliques = [("a", "b"), ("b", "c"), (("a",)), ("c",)]
    noisy = [
        Measurement(c, count(codes, TREE_DOMAIN, c) + rng.normal(0, 40, TREE_DOMAIN.project(c).shape), 40.0)
        for c in cliques
    ]
    assert min(float(m.noisy_values.min()) for m in noisy) < 0  # the test needs negative inputs
    model = estimate(TREE_DOMAIN, noisy)
    marginals = model.marginals()
    assert all(float(m.min()) >= 0 for m in marginals)
    from_ab = model.marginal(("a", "b")).sum(axis=0)
    from_bc = model.marginal(("b", "c")).sum(axis=1)
    np.testing.assert_allclose(from_ab, from_bc, rtol=1e-9, atol=1e-9)
    assert all(t.sum() == pytest.approx(model.total) for t in marginals)


def test_single_level_attribute_and_isolated_attributes() -> None:
    domain = Domain(("a", "one", "b"), (3, 1, 2))
    codes = np.array([[0, 0, 1], [1, 0, 0], [2, 0, 1], [2, 0, 1]])
    measurements = exact(codes, domain, [("a",), ("one",), ("b",)])
    model = estimate(domain, measurements)
    np.testing.assert_allclose(model.marginal(("one",)), [4.0], rtol=1e-6)
    np.testing.assert_allclose(model.marginal(("a",)), [1, 1, 2], rtol=1e-3)
    np.testing.assert_allclose(model.marginal(("b",)), [1, 3], rtol=1e-3)
    with pytest.raises(InvalidInput, match="no clique"):
        model.marginal(("a", "b"))
    sample = model.sample(4000, np.random.default_rng(0))
    assert np.all(sample[:, 1] == 0)
    joint = count(sample, domain, ("a", "b")) / 4000  # independent components: product of the 1-ways
    np.testing.assert_allclose(joint, np.outer([0.25, 0.25, 0.5], [0.25, 0.75]), atol=0.03)


def test_junction_tree_respects_cell_cap_and_running_intersection() -> None:
    domain = Domain(("a", "b", "c", "d"), (10, 10, 10, 10))
    cycle = [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")]
    with pytest.raises(InvalidInput, match="cap"):
        build_junction_tree(domain, cycle, max_cells=500)
    tree = build_junction_tree(domain, cycle, max_cells=1000)
    for node, parent in enumerate(tree.parent):
        if parent >= 0:
            assert set(tree.separator[node]) == set(tree.cliques[node]) & set(tree.cliques[parent])
    covered = {frozenset(c) for c in cycle}
    assert all(any(pair <= set(c) for c in tree.cliques) for pair in covered)


def test_estimate_rejects_mismatched_tables() -> None:
    with pytest.raises(InvalidInput, match="shape"):
        estimate(TREE_DOMAIN, [Measurement(("a",), np.zeros(4), 1.0)])
    with pytest.raises(InvalidInput, match="no measurements"):
        estimate(TREE_DOMAIN, [])


def test_config_and_model_validation() -> None:
    with pytest.raises(InvalidInput, match="max_iters"):
        EstimationConfig(max_iters=-1)
    with pytest.raises(InvalidInput, match="max_cells"):
        EstimationConfig(max_cells=0)
    model = estimate(TREE_DOMAIN, exact(tree_data(np.random.default_rng(0), 50), TREE_DOMAIN, [("a", "b")]))
    with pytest.raises(InvalidInput, match="n_rows"):
        model.sample(-1, np.random.default_rng(0))

