"""Fidelity: additive count vectors, combined report == pooled local report, TVD and Cramér's V behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.evaluation.fidelity import (
    combined_fidelity,
    combined_tvd,
    cramers_v,
    default_fidelity_cliques,
    fidelity_sensitivity_l2,
    fidelity_statistics,
    fidelity_vector_length,
    local_fidelity,
    scaled_party_tvd,
    total_variation,
    tvd_sensitivity_l2,
    tvd_statistics,
)
from cleanroom.marginals import count_table

DOMAIN = Domain(("a", "b", "c", "d"), (3, 4, 2, 5))


def correlated_codes(n: int, seed: int) -> np.ndarray:
    """a uniform, b = a most of the time, c and d independent."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, n)
    b = np.where(rng.random(n) < 0.8, a, rng.integers(0, 4, n))
    return np.stack([a, b, rng.integers(0, 2, n), rng.integers(0, 5, n)], axis=1)


def independent_codes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, n) for size in DOMAIN.shape], axis=1)


def test_fidelity_vectors_add_up_across_parties() -> None:
    codes = correlated_codes(2000, seed=1)
    cliques = default_fidelity_cliques(DOMAIN)
    parts = np.array_split(codes, [500, 1300])
    pooled = fidelity_statistics(codes, DOMAIN, cliques)
    assert pooled.dtype == np.int64 and pooled.size == fidelity_vector_length(DOMAIN, cliques)
    np.testing.assert_array_equal(sum(fidelity_statistics(p, DOMAIN, cliques) for p in parts), pooled)
    assert fidelity_sensitivity_l2(cliques) == pytest.approx(math.sqrt(4 + 6))


def test_combined_report_equals_local_report_on_pooled_data() -> None:
    real, synthetic = correlated_codes(3000, seed=2), independent_codes(2500, seed=3)
    cliques = default_fidelity_cliques(DOMAIN)
    summed = sum(fidelity_statistics(p, DOMAIN, cliques) for p in np.array_split(real, 3))
    combined = combined_fidelity(summed, synthetic, DOMAIN, cliques)
    local = local_fidelity(real, synthetic, DOMAIN, cliques)
    assert combined.summary() == pytest.approx(local.summary())
    np.testing.assert_allclose(combined.association_difference, local.association_difference)


def test_independent_synthetic_misses_the_correlated_pair() -> None:
    report = local_fidelity(
        correlated_codes(4000, 4), independent_codes(4000, 5), DOMAIN, default_fidelity_cliques(DOMAIN)
    )
    diff = report.association_difference
    assert diff[0, 1] > 0.5  # the a-b association is lost
    others = [diff[i, j] for i in range(4) for j in range(i + 1, 4) if (i, j) != (0, 1)]
    assert max(others) < 0.1
    assert report.two_way_tvd[("a", "b")] > 0.3
    # a, c, d keep their uniform marginals; b's real marginal is skewed towards a's 3 levels
    assert max(report.one_way_tvd[name] for name in "acd") < 0.05
    assert report.one_way_tvd["b"] > 0.1


def test_tvd_extremes_and_cramers_v() -> None:
    assert total_variation([5, 5, 0], [1, 1, 0]) == 0.0
    assert total_variation([4, 0], [0, 7]) == 1.0
    assert cramers_v(np.diag([10, 20, 30])) == pytest.approx(1.0)
    assert cramers_v(np.outer([1, 2, 3], [4, 5])) == pytest.approx(0.0)
    assert cramers_v(np.array([[5, 7]])) == 0.0


def test_count_table_layout_is_canonical() -> None:
    codes = np.array([[0, 3, 1, 4], [2, 0, 0, 0], [2, 0, 0, 1]])
    table = count_table(codes, DOMAIN, ("d", "a"))
    assert table.shape == (3, 5)
    assert table[0, 4] == 1 and table[2, 0] == 1 and table[2, 1] == 1 and table.sum() == 3


def test_noisy_negative_counts_are_handled() -> None:
    real, synthetic = correlated_codes(2000, 6), correlated_codes(2000, 7)
    cliques = default_fidelity_cliques(DOMAIN)
    vector = fidelity_statistics(real, DOMAIN, cliques)
    noisy = vector + np.random.default_rng(8).normal(0, 4, vector.size).round().astype(np.int64)
    report = combined_fidelity(noisy, synthetic, DOMAIN, cliques)
    assert report.summary()["max_two_way_tvd"] < 0.1


def test_bad_codes_and_vectors_are_refused() -> None:
    cliques = default_fidelity_cliques(DOMAIN, pairs=False)
    with pytest.raises(InvalidInput, match="column 'b'"):
        fidelity_statistics(np.array([[0, 4, 0, 0]]), DOMAIN, cliques)
    with pytest.raises(InvalidInput, match="length"):
        combined_fidelity(np.zeros(3), independent_codes(10, 1), DOMAIN, cliques)


def test_combined_tvd_is_weighted_mean_of_party_tvds_and_bounds_pooled_tvd() -> None:
    real, synthetic = correlated_codes(3000, seed=9), independent_codes(2500, seed=10)
    cliques = default_fidelity_cliques(DOMAIN)
    parts = np.array_split(real, [400, 1400])
    summed = np.sum([tvd_statistics(p, synthetic, DOMAIN, cliques) for p in parts], axis=0)
    combined = combined_tvd(summed, DOMAIN, cliques)
    locals_ = [local_fidelity(p, synthetic, DOMAIN, cliques) for p in parts]
    pooled = local_fidelity(real, synthetic, DOMAIN, cliques)
    for pair, value in combined.two_way_tvd.items():
        weighted = sum(len(p) * r.two_way_tvd[pair] for p, r in zip(parts, locals_, strict=True)) / len(real)
        assert value == pytest.approx(weighted, abs=1e-5)
        assert value >= pooled.two_way_tvd[pair] - 1e-5
    assert math.isnan(combined.summary()["mean_association_difference"])


def test_tvd_vector_moves_within_its_sensitivity() -> None:
    cliques = default_fidelity_cliques(DOMAIN)
    rng = np.random.default_rng(11)
    for trial in range(40):
        real = correlated_codes(int(rng.integers(1, 400)), seed=100 + trial)
        synthetic = independent_codes(int(rng.choice([1, 3, 64, 700, 1024])), seed=200 + trial)
        base = tvd_statistics(real[:-1], synthetic, DOMAIN, cliques)
        added = tvd_statistics(real, synthetic, DOMAIN, cliques)
        assert np.abs(added - base).max() <= 1024  # S per entry: the exact rounding adds nothing
        assert np.linalg.norm(added - base) <= tvd_sensitivity_l2(cliques)
    with pytest.raises(InvalidInput, match="length"):
        combined_tvd(base[:-1], DOMAIN, cliques)


def test_scaled_party_tvd_is_the_exact_rational_rounded_half_up() -> None:
    from fractions import Fraction

    rng = np.random.default_rng(12)
    for _ in range(500):
        real, synthetic = rng.integers(0, 9, 6), rng.integers(0, 9, 6) * int(rng.integers(0, 2))
        s = [int(v) for v in synthetic] if synthetic.sum() else [1] * 6  # empty synthetic: uniform
        n, m = int(real.sum()), sum(s)
        n_tvd = sum(
            (abs(Fraction(int(c)) - Fraction(n * v, m)) for c, v in zip(real, s, strict=True)), Fraction(0)
        )
        exact = 1024 * n_tvd / 2
        assert scaled_party_tvd(real, synthetic) == math.floor(exact + Fraction(1, 2))
        if n:
            assert scaled_party_tvd(real, synthetic) == pytest.approx(
                1024 * n * total_variation(real, synthetic), abs=0.5
            )
