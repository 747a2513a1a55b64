"""Statistical and contract tests of the exact discrete Gaussian sampler (cleanroom.noise).

The public sampler draws from os.urandom, so it has no seed: its goodness-of-fit tests use large samples and
a tiny significance level (ALPHA = 1e-6 per test), so a false failure is negligible while a wrong
distribution (e.g. variance off by 1%, a biased uniform, rounding) still fails. Tests of internal paths
use a seeded byte source (`_Rng(seeded(...))`) and are reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from cleanroom import noise
from cleanroom.errors import InvalidInput
from cleanroom.noise import _attempt_scalar, _attempt_vector, _Params, _Rng, _sample

ALPHA = 1e-6
Z_LIMIT = 5.5  # two-sided normal tail ~4e-8


def seeded(seed: int) -> Callable[[int], bytes]:
    gen = np.random.default_rng(seed)
    return lambda n: gen.bytes(n)


def exact_pmf(sigma2: Fraction) -> tuple[np.ndarray, np.ndarray]:
    """Support and pmf of N_Z(0, sigma2), normalised over +-(40 sigma + 20) (the rest is < 1e-340)."""
    sigma = float(sigma2) ** 0.5
    half = int(40 * sigma) + 20
    xs = np.arange(-half, half + 1)
    weights = np.exp(-(xs.astype(float) ** 2) / (2 * float(sigma2)))
    return xs, weights / weights.sum()


def chi2_pvalue(
    samples: np.ndarray, sigma2: Fraction, min_expected: float = 20.0, max_bins: int = 200
) -> float:
    """Chi-square p-value against the exact pmf; adjacent support points merged so each bin is big enough."""
    xs, pmf = exact_pmf(sigma2)
    n = samples.size
    bin_mass = max(min_expected, n / max_bins) / n
    raw = np.floor((np.cumsum(pmf) - pmf) / bin_mass).astype(np.int64)  # by probability mass to the left
    raw[raw == raw[-1]] = max(raw[-1] - 1, 0)  # the last bin may be small: merge it into its neighbour
    _, bin_of = np.unique(raw, return_inverse=True)
    expected = np.bincount(bin_of, weights=pmf) * n
    positions = np.clip(np.searchsorted(xs, samples), 0, xs.size - 1)
    assert np.array_equal(xs[positions], samples), "a sample fell outside +-(40 sigma + 20)"
    observed = np.bincount(bin_of[positions], minlength=expected.size)
    return float(stats.chisquare(observed, expected).pvalue)


def moments(sigma2: Fraction) -> tuple[float, float]:
    xs, pmf = exact_pmf(sigma2)
    var = float(np.sum(pmf * xs.astype(float) ** 2))
    return var, float(np.sum(pmf * xs.astype(float) ** 4))


@pytest.mark.parametrize("sigma2", [Fraction(4), Fraction(100), Fraction(10**6)])
def test_goodness_of_fit_csprng(sigma2: Fraction) -> None:
    samples = noise.sample_discrete_gaussian(sigma2, 200_000)
    assert chi2_pvalue(samples, sigma2) > ALPHA


@pytest.mark.parametrize("sigma2", [Fraction(1, 3), Fraction(40001, 10000), Fraction(10**10)])
def test_goodness_of_fit_rational_and_large_sigma_seeded(sigma2: Fraction) -> None:
    samples = _sample(sigma2, 100_000, _Rng(seeded(11)))
    assert chi2_pvalue(samples, sigma2) > ALPHA


def test_chi2_helper_detects_wrong_variance() -> None:
    """The test statistic must be able to fail: 6% too much variance is caught at our sample sizes."""
    samples = noise.sample_discrete_gaussian(Fraction(10609, 100), 200_000)  # sigma = 10.3
    assert chi2_pvalue(samples, Fraction(100)) < ALPHA


@pytest.mark.parametrize("sigma2", [Fraction(4), Fraction(100)])
def test_mean_and_variance(sigma2: Fraction) -> None:
    n = 300_000
    samples = noise.sample_discrete_gaussian(sigma2, n).astype(float)
    var, fourth = moments(sigma2)
    assert abs(samples.mean()) < Z_LIMIT * (var / n) ** 0.5
    assert abs(samples.var() - var) < Z_LIMIT * ((fourth - var**2) / n) ** 0.5
    assert abs(var - float(sigma2)) < 1e-9 * float(sigma2)  # N_Z(0, s^2) has variance ~s^2 for s >= 1


def test_sum_of_party_shares_has_m_times_the_variance() -> None:
    m, n, sigma2 = 4, 200_000, Fraction(4)
    total = sum(noise.party_noise_share(n, sigma2) for _ in range(m))
    var, fourth = moments(sigma2)
    sum_var = m * var
    sum_fourth = m * fourth + 3 * m * (m - 1) * var**2  # independent, symmetric summands
    assert abs(total.mean()) < Z_LIMIT * (sum_var / n) ** 0.5
    assert abs(total.astype(float).var() - sum_var) < Z_LIMIT * ((sum_fourth - sum_var**2) / n) ** 0.5


def test_scalar_path_matches_pmf() -> None:
    """The Python-int path (huge sigma, long geometric runs) gives the same distribution."""
    p, rng = _Params.of(Fraction(4)), _Rng(seeded(5))
    samples = []
    while len(samples) < 10_000:
        value = _attempt_scalar(p, rng)
        if value is not None:
            samples.append(value)
    assert chi2_pvalue(np.array(samples), Fraction(4)) > ALPHA


def test_capped_geometric_continuation_is_exact() -> None:
    """Cap at V=1: a third of the attempts are finished with Python ints; the output must not move."""
    sigma2, rng = Fraction(9), _Rng(seeded(7))
    p, parts = _Params.of(sigma2), []
    for _ in range(10):
        values, accepted = _attempt_vector(p, rng, 6_000, vcap=1)
        parts.append(values[accepted])
    assert chi2_pvalue(np.concatenate(parts), sigma2) > ALPHA


def test_huge_sigma_uses_python_ints_and_returns_int64() -> None:
    sigma2 = Fraction(2**70)
    assert _Params.of(sigma2).vcap() == 0
    samples = noise.sample_discrete_gaussian(sigma2, 200)
    assert samples.dtype == np.int64
    assert 0.5 < float(np.std(samples.astype(float))) / 2**35 < 1.5


def test_fast_path_is_used_up_to_sigma_1e5() -> None:
    assert _Params.of(Fraction(10**10)).vcap() >= 60


def test_output_dtype_shape_and_empty() -> None:
    out = noise.sample_discrete_gaussian(Fraction(4), 1000)
    assert out.dtype == np.int64 and out.shape == (1000,)
    assert noise.sample_discrete_gaussian(4, 0).shape == (0,)


@pytest.mark.parametrize("bad", [4.0, 2.5, True, "4", None, np.float64(4.0)])
def test_non_exact_sigma2_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="sigma2"):
        noise.sample_discrete_gaussian(bad, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [Fraction(0), Fraction(-1), Fraction(2**81)])
def test_out_of_range_sigma2_is_refused(bad: Fraction) -> None:
    with pytest.raises(InvalidInput, match="sigma2"):
        noise.sample_discrete_gaussian(bad, 10)


@pytest.mark.parametrize("bad_size", [-1, 2.0, True])
def test_bad_size_is_refused(bad_size: object) -> None:
    with pytest.raises(InvalidInput, match="size"):
        noise.sample_discrete_gaussian(Fraction(4), bad_size)  # type: ignore[arg-type]


def test_party_share_refuses_sigma_below_two() -> None:
    with pytest.raises(InvalidInput, match="tau"):
        noise.party_noise_share(10, Fraction(399, 100))
    assert noise.party_noise_share(10, Fraction(4)).dtype == np.int64
    # one of three draws making up a party's share: the floor is on the party's variance, 3 x 4/3
    assert noise.party_noise_share(10, Fraction(4, 3), 3).dtype == np.int64
    with pytest.raises(InvalidInput, match="tau"):
        noise.party_noise_share(10, Fraction(13, 10), 3)
    with pytest.raises(InvalidInput, match="draws"):
        noise.party_noise_share(10, Fraction(4), 5)  # more than MAX_NOISE_SHARES


def test_randomness_comes_from_os_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_urandom = os.urandom

    def counting_urandom(n: int) -> bytes:
        calls.append(n)
        return real_urandom(n)

    monkeypatch.setattr(noise.os, "urandom", counting_urandom)
    noise.sample_discrete_gaussian(Fraction(100), 1000)
    assert sum(calls) >= 1000


def test_uniform_below_has_no_modulo_bias() -> None:
    """Bound 3 on 8-bit words: 256 = 85*3 + 1, so word 0 must be rejected (else 0 is drawn more often)."""
    rng = _Rng(seeded(3))
    draws = rng.below(3, 300_000)
    assert stats.chisquare(np.bincount(draws, minlength=3)).pvalue > ALPHA
    script = iter([b"\x00", b"\x04"])
    scripted = _Rng(lambda n: next(script))  # word 0 is in the rejected zone, then word 4 -> 4 % 3
    assert int(scripted.below(3, 1)[0]) == 1


def test_same_seeded_source_gives_same_output() -> None:
    a = _sample(Fraction(100), 1000, _Rng(seeded(1)))
    b = _sample(Fraction(100), 1000, _Rng(seeded(1)))
    assert np.array_equal(a, b)
