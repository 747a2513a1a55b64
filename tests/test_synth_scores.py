"""The proposed linear-score release (not wired): additivity, the sensitivity bound, unbiased residuals."""

from __future__ import annotations

import numpy as np
import pytest
from synth_helpers import TREE_DOMAIN, count, tree_data

from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement
from cleanroom.synth.scores import (
    party_scores,
    residual_estimates,
    score_rho,
    score_sensitivity_l2,
    score_weights,
)

PAIRS = [("a", "b"), ("b", "c"), ("a", "d"), ("c", "e")]
SCALE = 64


def _weights(codes: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for pair in PAIRS:
        table = count(codes, TREE_DOMAIN, pair)
        screen = Measurement(pair, table + rng.normal(0, 30, table.shape), 30.0)
        model = np.full(table.shape, table.sum() / table.size)
        out.append(score_weights(screen, model, SCALE))
    return out


def test_scores_add_up_over_parties_and_weights_are_bounded() -> None:
    rng = np.random.default_rng(1)
    codes = tree_data(rng, 3000)
    weights = _weights(codes, rng)
    assert all(np.abs(w).max() <= SCALE for w in weights) and any(np.abs(w).max() == SCALE for w in weights)
    pooled = party_scores(codes, TREE_DOMAIN, PAIRS, weights)
    parts = np.array_split(codes, 3)
    summed = sum(party_scores(p, TREE_DOMAIN, PAIRS, weights) for p in parts)
    np.testing.assert_array_equal(summed, pooled)


def test_one_record_moves_every_score_by_at_most_the_scale() -> None:
    rng = np.random.default_rng(2)
    codes = tree_data(rng, 500)
    weights = _weights(codes, rng)
    base = party_scores(codes, TREE_DOMAIN, PAIRS, weights)
    worst = 0.0
    for row in tree_data(np.random.default_rng(3), 200):  # add-one neighbours
        changed = party_scores(np.vstack([codes, row]), TREE_DOMAIN, PAIRS, weights) - base
        assert np.abs(changed).max() <= SCALE
        worst = max(worst, float(np.linalg.norm(changed)))
    assert worst <= score_sensitivity_l2(len(PAIRS), SCALE)
    assert score_rho(len(PAIRS), 2.0 * SCALE**2, SCALE) == pytest.approx(len(PAIRS) / 4)


def test_residual_estimates_are_unbiased_under_noise() -> None:
    rng = np.random.default_rng(4)
    codes = tree_data(rng, 4000)
    weights = _weights(codes, rng)
    models = [
        np.full(TREE_DOMAIN.project(p).shape, len(codes) / TREE_DOMAIN.project(p).size()) for p in PAIRS
    ]
    truth = np.array(
        [
            np.sum(w * (count(codes, TREE_DOMAIN, p) - m)) / SCALE
            for w, p, m in zip(weights, PAIRS, models, strict=True)
        ]
    )
    exact = party_scores(codes, TREE_DOMAIN, PAIRS, weights).astype(float)
    sigma = 8.0 * SCALE
    draws = np.array(
        [
            residual_estimates(exact + rng.normal(0, sigma, exact.size), models, weights, SCALE)
            for _ in range(400)
        ]
    )
    standard_error = (sigma / SCALE) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - truth) < 5 * standard_error)
    with pytest.raises(InvalidInput, match="2 weight tables"):
        party_scores(codes, TREE_DOMAIN, PAIRS, weights[:2])
