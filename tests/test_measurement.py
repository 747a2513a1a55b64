"""Measurement and RoundSpec validation."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement, RoundSpec

DOMAIN = Domain(("a", "b", "c"), (2, 3, 4))


def test_measurement_is_frozen_and_read_only() -> None:
    m = Measurement(("a", "b"), np.zeros((2, 3)), 1.5)
    with pytest.raises(ValueError):
        m.noisy_values[0, 0] = 1.0
    with pytest.raises(AttributeError):
        m.stddev = 2.0  # type: ignore[misc]
    assert m.variance == pytest.approx(2.25)


@pytest.mark.parametrize(
    ("clique", "values", "stddev", "sensitivity", "fragment"),
    [
        ((), np.zeros(()), 1.0, 1.0, "non-empty"),
        (("a", "a"), np.zeros((2, 2)), 1.0, 1.0, "repeats"),
        (("a",), np.zeros((2, 2)), 1.0, 1.0, "axes"),
        (("a",), np.array([1.0, np.nan]), 1.0, 1.0, "NaN"),
        (("a",), np.zeros(2), 0.0, 1.0, "stddev"),
        (("a",), np.zeros(2), float("inf"), 1.0, "stddev"),
        (("a",), np.zeros(2), 1.0, -1.0, "sensitivity"),
    ],
)
def test_measurement_rejects_bad_fields(
    clique: tuple[str, ...], values: np.ndarray, stddev: float, sensitivity: float, fragment: str
) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        Measurement(clique, values, stddev, sensitivity)


def test_check_domain_shape_order_and_names() -> None:
    Measurement(("a", "c"), np.zeros((2, 4)), 1.0).check_domain(DOMAIN)
    with pytest.raises(InvalidInput, match="shape"):
        Measurement(("a", "c"), np.zeros((2, 3)), 1.0).check_domain(DOMAIN)
    with pytest.raises(InvalidInput, match="domain order"):
        Measurement(("c", "a"), np.zeros((4, 2)), 1.0).check_domain(DOMAIN)
    with pytest.raises(InvalidInput, match="not in the domain"):
        Measurement(("z",), np.zeros(2), 1.0).check_domain(DOMAIN)


def test_roundspec_validation_and_stddev() -> None:
    spec = RoundSpec("one-way", (("a",), ("b",)), Fraction(9, 4), 0.5)
    assert spec.stddev == pytest.approx(1.5)
    with pytest.raises(InvalidInput, match="sigma_total2"):
        RoundSpec("r", (("a",),), 2.25, 0.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="sigma_total2"):
        RoundSpec("r", (("a",),), Fraction(0), 0.5)
    with pytest.raises(InvalidInput, match="rho"):
        RoundSpec("r", (("a",),), Fraction(1), 0.0)
    with pytest.raises(InvalidInput, match="cliques"):
        RoundSpec("r", (), Fraction(1), 0.5)
    with pytest.raises(InvalidInput, match="name"):
        RoundSpec("", (("a",),), Fraction(1), 0.5)


def test_fraction_stddev_is_accepted_as_float() -> None:
    m = Measurement(("a",), np.zeros(2), Fraction(3, 2))  # type: ignore[arg-type]
    assert isinstance(m.stddev, float) and m.variance == pytest.approx(2.25)


def test_roundspec_sensitivities_and_dim() -> None:
    spec = RoundSpec("pairs", (("a", "b"), ("b", "c"), ("c",)), Fraction(10), 0.15)
    assert spec.sensitivity_l1 == 3 and spec.sensitivity_l2 == pytest.approx(3**0.5)
    assert spec.dim(DOMAIN) == 6 + 12 + 4
