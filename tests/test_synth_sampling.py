"""Ancestral sampling: in-domain codes whose empirical marginals fit the model's (chi-square, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from synth_helpers import TREE_DOMAIN, count, exact, tree_data

from cleanroom.domain import Domain
from cleanroom.measurement import Measurement
from cleanroom.synth import estimate
from cleanroom.synth.model import _draw_rows


def _chi2_pvalue(observed: np.ndarray, expected: np.ndarray) -> float:
    keep = expected > 1e-9
    assert observed[~keep].sum() == 0  # nothing sampled where the model has no mass
    statistic = float((((observed - expected) ** 2)[keep] / expected[keep]).sum())
    return float(stats.chi2.sf(statistic, df=int(keep.sum()) - 1))


def test_sampled_marginals_fit_model_marginals() -> None:
    rng = np.random.default_rng(7)
    codes = tree_data(rng, 2000)
    noisy = [
        Measurement(c, count(codes, TREE_DOMAIN, c) + rng.normal(0, 5, TREE_DOMAIN.project(c).shape), 5.0)
        for c in [("a", "b"), ("b", "c"), ("a", "d"), ("d", "e"), ("a",)]
    ]
    model = estimate(TREE_DOMAIN, noisy)
    n = 20000
    sample = model.sample(n, np.random.default_rng(8))
    assert sample.shape == (n, len(TREE_DOMAIN)) and sample.dtype == np.int64
    assert sample.min() >= 0 and np.all(sample.max(axis=0) < np.array(TREE_DOMAIN.shape))
    pvalues = []
    for clique, table in zip(model.tree.cliques, model.marginals(), strict=True):
        pvalues.append(_chi2_pvalue(count(sample, TREE_DOMAIN, clique), table / model.total * n))
    # a non-tree pair (b, d) checks that the separators are respected across cliques
    ab_d = (
        np.einsum("ab,ad->abd", model.marginal(("a", "b")), model.marginal(("a", "d")))
        / model.marginal(("a",))[:, None, None]
    )
    pvalues.append(_chi2_pvalue(count(sample, TREE_DOMAIN, ("b", "d")), ab_d.sum(axis=0) / model.total * n))
    assert min(pvalues) > 0.001, pvalues


def test_sampling_is_reproducible_and_sampler_detects_a_wrong_table() -> None:
    codes = tree_data(np.random.default_rng(3), 1000)
    model = estimate(TREE_DOMAIN, exact(codes, TREE_DOMAIN, [("a", "b"), ("b", "c"), ("a", "d"), ("d", "e")]))
    first = model.sample(500, np.random.default_rng(11))
    np.testing.assert_array_equal(first, model.sample(500, np.random.default_rng(11)))
    sample = model.sample(20000, np.random.default_rng(12))
    wrong = np.full(TREE_DOMAIN.project(("d", "e")).shape, 20000 / 15)
    assert _chi2_pvalue(count(sample, TREE_DOMAIN, ("d", "e")), wrong) < 1e-6


def test_draw_rows_handles_zero_rows_and_zero_cells() -> None:
    joint = np.array([[0.0, 2.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    rows = np.repeat(np.arange(3), 4000)
    picked = _draw_rows(joint, rows, np.random.default_rng(5))
    first = picked[rows == 0]
    assert set(np.unique(first)) == {1, 3}
    assert abs(float(np.mean(first == 1)) - 0.5) < 0.04
    assert set(np.unique(picked[rows == 1])) == {0, 1, 2, 3}  # no mass: uniform
    assert np.all(picked[rows == 2] == 0)


@pytest.mark.parametrize("n_rows", [0, 1])
def test_tiny_samples(n_rows: int) -> None:
    domain = Domain(("x", "y"), (2, 3))
    model = estimate(domain, [Measurement(("x", "y"), np.arange(6.0).reshape(2, 3), 1.0)])
    assert model.sample(n_rows, np.random.default_rng(0)).shape == (n_rows, 2)
