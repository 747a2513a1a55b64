"""Noisy marginal measurements and the specification of one measurement round.

A `Measurement` is what the coordinator holds after a secure-aggregation round: the noisy sum of every
party's count table on one clique, with the standard deviation of the total noise in each cell. A
`RoundSpec` is what a planner asks the parties to measure next: the cliques, the total noise variance per
cell (an exact `Fraction`, so the integer noise samplers can use it) and the zCDP cost of the round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput


def _check_clique(clique: object, where: str) -> None:
    if not isinstance(clique, tuple) or not clique or not all(isinstance(a, str) for a in clique):
        raise InvalidInput(f"{where}: clique {clique!r} must be a non-empty tuple of attribute names")
    if len(set(clique)) != len(clique):
        raise InvalidInput(f"{where}: clique {clique!r} repeats an attribute")


@dataclass(frozen=True, eq=False)
class Measurement:
    """Noisy counts of the marginal table on `clique` (canonical order, C-order axes).

    `stddev` is the standard deviation of the noise in every cell; `sensitivity` the L2 sensitivity of
    this one table (one record changes it by 1 in one cell).
    """

    clique: Clique
    noisy_values: npt.NDArray[np.float64]
    stddev: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        _check_clique(self.clique, "Measurement")
        values = np.array(self.noisy_values, dtype=np.float64)
        if values.ndim != len(self.clique):
            raise InvalidInput(
                f"Measurement {self.clique}: noisy_values has {values.ndim} axes,"
                f" clique has {len(self.clique)}"
            )
        if not np.all(np.isfinite(values)):
            raise InvalidInput(f"Measurement {self.clique}: noisy_values contain NaN or infinity")
        values.setflags(write=False)
        object.__setattr__(self, "noisy_values", values)
        if not (math.isfinite(self.stddev) and self.stddev > 0):
            raise InvalidInput(f"Measurement {self.clique}: stddev ({self.stddev}) must be finite and > 0")
        object.__setattr__(self, "stddev", float(self.stddev))  # accepts Fraction (e.g. from sigma_total2)
        if not (math.isfinite(self.sensitivity) and self.sensitivity > 0):
            raise InvalidInput(
                f"Measurement {self.clique}: sensitivity ({self.sensitivity}) must be finite and > 0"
            )

    def check_domain(self, domain: Domain) -> None:
        """Raise `InvalidInput` unless the clique is in canonical order and the table shape fits `domain`."""
        for attr in self.clique:
            if attr not in domain:
                raise InvalidInput(f"Measurement {self.clique}: attribute {attr!r} is not in the domain")
        if domain.canonical(self.clique) != self.clique:
            raise InvalidInput(
                f"Measurement {self.clique}: clique is not in domain order {domain.canonical(self.clique)}"
            )
        expected = domain.project(self.clique).shape
        if self.noisy_values.shape != expected:
            raise InvalidInput(
                f"Measurement {self.clique}: table shape {self.noisy_values.shape} != domain shape {expected}"
            )

    @property
    def variance(self) -> float:
        return self.stddev * self.stddev


@dataclass(frozen=True)
class RoundSpec:
    """One measurement round: every party counts `cliques`; the sum carries noise of variance `sigma_total2`.

    `rho` is the zCDP cost of the round (all its tables together) for the calibrated noise.
    """

    name: str
    cliques: tuple[Clique, ...]
    sigma_total2: Fraction
    rho: float

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInput("RoundSpec: name must be non-empty")
        if not isinstance(self.cliques, tuple) or not self.cliques:
            raise InvalidInput(f"RoundSpec {self.name!r}: cliques must be a non-empty tuple")
        for clique in self.cliques:
            _check_clique(clique, f"RoundSpec {self.name!r}")
        if not isinstance(self.sigma_total2, Fraction) or self.sigma_total2 <= 0:
            raise InvalidInput(
                f"RoundSpec {self.name!r}: sigma_total2 ({self.sigma_total2!r}) must be a Fraction > 0"
            )
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise InvalidInput(f"RoundSpec {self.name!r}: rho ({self.rho}) must be finite and > 0")

    @property
    def stddev(self) -> float:
        """Standard deviation of the total noise in one cell."""
        return math.sqrt(self.sigma_total2)

    @property
    def sensitivity_l1(self) -> float:
        """L1 sensitivity of the round's flattened vector: one record adds 1 to one cell of every table."""
        return float(len(self.cliques))

    @property
    def sensitivity_l2(self) -> float:
        return math.sqrt(len(self.cliques))

    def dim(self, domain: Domain) -> int:
        """Cells in the round's flattened vector (all tables)."""
        return sum(domain.project(c).size() for c in self.cliques)
