"""Tests of zCDP accounting: check values, conversions, distributed guarantee, calibration, splits."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from fractions import Fraction

import numpy as np
import pytest

from cleanroom.accounting import (
    DistributedGaussian,
    Release,
    calibrate,
    cdp_delta,
    cdp_eps,
    cdp_rho,
    compose,
    gaussian_rho,
    split_rho,
)
from cleanroom.errors import InvalidInput


def closed_form(rho: float, delta: float) -> float:
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def brute_force_delta(rho: float, eps: float) -> float:
    """Independent check of the CKS conversion: minimise over a dense log-spaced grid of alpha."""
    alphas = 1 + np.logspace(-6, 5, 400_000)
    log_delta = (alphas - 1) * (alphas * rho - eps) + alphas * np.log1p(-1 / alphas) - np.log(alphas - 1)
    return float(min(1.0, np.exp(log_delta.min())))


def test_check_value_rho_1_32_delta_1e_3() -> None:
    assert cdp_eps(1 / 32, 1e-3) == pytest.approx(0.688, abs=5e-4)


@pytest.mark.parametrize("rho", [1e-4, 1 / 32, 0.5, 2.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_tight_eps_is_valid_and_below_closed_form(rho: float, delta: float) -> None:
    eps = cdp_eps(rho, delta)
    assert eps <= closed_form(rho, delta)
    assert cdp_delta(rho, eps) <= delta * (1 + 1e-9)
    assert cdp_delta(rho, eps * (1 - 1e-6)) > delta  # and it is the smallest such eps


@pytest.mark.parametrize(("rho", "eps"), [(1 / 32, 0.688), (0.5, 3.0), (0.01, 0.1), (2.0, 10.0)])
def test_cdp_delta_matches_brute_force(rho: float, eps: float) -> None:
    assert cdp_delta(rho, eps) == pytest.approx(brute_force_delta(rho, eps), rel=1e-4)


@pytest.mark.parametrize("rho", [0.1, 1.0])
def test_tight_and_closed_form_agree_as_delta_vanishes(rho: float) -> None:
    ratios = [cdp_eps(rho, d) / closed_form(rho, d) for d in (1e-3, 1e-10, 1e-100, 1e-300)]
    assert ratios == sorted(ratios)
    assert ratios[-1] > 0.99


@pytest.mark.parametrize("rho", [1e-3, 1 / 32, 0.3, 1.0, 5.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-9])
def test_cdp_rho_round_trips(rho: float, delta: float) -> None:
    back = cdp_rho(cdp_eps(rho, delta), delta)
    assert back == pytest.approx(rho, rel=1e-8)
    assert cdp_delta(back, cdp_eps(rho, delta)) <= delta * (1 + 1e-9)


def test_conversion_inputs_are_validated() -> None:
    for call in (
        lambda: cdp_eps(0, 1e-6),
        lambda: cdp_eps(0.1, 0),
        lambda: cdp_eps(0.1, 1.5),
        lambda: cdp_rho(-1, 1e-6),
        lambda: cdp_delta(0.1, math.nan),
    ):
        with pytest.raises(InvalidInput):
            call()


def test_gaussian_rho_and_compose() -> None:
    assert gaussian_rho(1, Fraction(8)) == 1 / 16
    assert gaussian_rho(2.0, 2.0) == 1.0
    assert compose([0.1, 0.2, 0.3]) == pytest.approx(0.6, abs=1e-15)
    with pytest.raises(InvalidInput):
        compose([0.1, -0.2])


def test_k_tables_sum_to_the_right_rho() -> None:
    n_parties, n_min = 5, 3
    sigmas_total2 = [Fraction(36), Fraction(50), Fraction(1234, 10)]
    per_table = [DistributedGaussian(s, n_parties, n_min).rho(1, 1, 64) for s in sigmas_total2]
    expected = sum(1 / (2 * n_min * float(s / n_min)) for s in sigmas_total2)  # 1/(2 m sigma_k^2)
    assert compose(per_table) == pytest.approx(expected, rel=1e-12)


def test_distributed_gaussian_parameters_and_local_bound() -> None:
    noise = DistributedGaussian(Fraction(30), n_parties=4, n_min=3)
    assert noise.sigma_party2 == Fraction(10)
    assert noise.rho_local() == pytest.approx(1 / 20)
    assert noise.rho(1, 1, 100) == pytest.approx(1 / 60, rel=1e-12)  # tau ~ 1e-85 at sigma_party^2 = 10


def test_tau_formula_and_effect_for_small_sigma() -> None:
    noise = DistributedGaussian(Fraction(3, 4), n_parties=3, n_min=3)  # sigma_party^2 = 1/4
    direct = 10 * sum(math.exp(-2 * math.pi**2 * 0.25 * k / (k + 1)) for k in (1, 2))
    assert noise.tau() == pytest.approx(direct, rel=1e-12)
    assert DistributedGaussian(Fraction(4), 1, 1).tau() == 0.0
    dim = 1000
    eps_l2 = math.sqrt(1 / 0.75 + noise.tau() * dim / 2)
    eps_l1 = 1 / math.sqrt(0.75) + noise.tau() * math.sqrt(dim)
    assert noise.rho(1, 1, dim) == pytest.approx(min(eps_l1, eps_l2) ** 2 / 2, rel=1e-12)
    assert noise.rho(1, 1, dim) > 1 / (2 * 0.75)  # tau makes the guarantee worse
    assert DistributedGaussian(Fraction(12), 3, 3).tau() < 1e-15  # sigma_party = 2: negligible


def test_distributed_gaussian_validates() -> None:
    with pytest.raises(InvalidInput, match="sigma_total2"):
        DistributedGaussian(12.0, 3, 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="n_min"):
        DistributedGaussian(Fraction(12), 3, 4)
    with pytest.raises(InvalidInput, match="n_parties"):
        DistributedGaussian(Fraction(12), 0, 1)
    with pytest.raises(InvalidInput, match="dim"):
        DistributedGaussian(Fraction(12), 3, 2).rho(1, 1, 0)
    with pytest.raises(FrozenInstanceError):
        DistributedGaussian(Fraction(12), 3, 2).n_min = 1  # type: ignore[misc]


def test_calibrate_never_exceeds_the_target() -> None:
    rng = np.random.default_rng(2026)
    for _ in range(300):
        target = float(10 ** rng.uniform(-4, 0.5))
        n_min = int(rng.integers(1, 8))
        sens = float(rng.choice([1.0, math.sqrt(3), 2.0]))
        dim = int(rng.integers(1, 5000))
        sigma_total2 = calibrate(target, sens, n_min, n_parties=n_min + 2, dim=dim)
        noise = DistributedGaussian(sigma_total2, n_min + 2, n_min)
        realised = noise.rho(sens * math.sqrt(dim), sens, dim)
        assert realised <= target
        if noise.sigma_party2 > 4:  # not at the sigma_party >= 2 floor: close to the target
            assert realised > target * (1 - 1e-3)


def test_calibrate_rounding_and_floor() -> None:
    sigma_total2 = calibrate(0.01, 1.0, 3)  # ideal sigma_party2 = 50/3
    assert isinstance(sigma_total2, Fraction)
    assert (sigma_total2 / 3).denominator <= 10_000 and 10_000 % (sigma_total2 / 3).denominator == 0
    assert sigma_total2 / 3 >= Fraction(50, 3)
    floored = calibrate(10.0, 1.0, 4)  # wants sigma_party2 = 1/80, floored at 4
    assert floored / 4 == 4


def test_split_rho_sums_exactly() -> None:
    parts = split_rho(1.0, [1, 1, 1])
    assert sum(parts) == 1 and parts[0] == Fraction(1, 3)
    odd = split_rho(0.1, [1, 2, 3, 7])
    assert sum(odd) == Fraction(0.1)
    assert odd[3] / odd[0] == 7
    with pytest.raises(InvalidInput):
        split_rho(1.0, [0, 0])
    with pytest.raises(InvalidInput):
        split_rho(-1.0, [1])


def test_release_validates_and_is_frozen() -> None:
    release = Release("r1", (("age", "sex"), ("income",)), 1.0, Fraction(4), 2, 0.05)
    assert release.cliques == (("age", "sex"), ("income",))
    with pytest.raises(FrozenInstanceError):
        release.rho = 1.0  # type: ignore[misc]
    with pytest.raises(InvalidInput, match="sigma_party2"):
        Release("r1", (("age",),), 1.0, 4.0, 2, 0.05)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="cliques"):
        Release("r1", (), 1.0, Fraction(4), 2, 0.05)
    with pytest.raises(InvalidInput, match="rho"):
        Release("r1", (("age",),), 1.0, Fraction(4), 2, 0.0)
