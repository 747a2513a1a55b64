"""Centralised one-call MST: count, noise, plan, fit and sample in one process (tests, benchmarks, demos).

By default the noise is the production noise: exact discrete Gaussian N_Z(0, sigma_total2) per cell from
`cleanroom.noise` (OS randomness, so not reproducible from `rng`). `exact_noise=False` adds continuous
Gaussian noise drawn from `rng` instead (reproducible; for tests and statistical experiments).
Counting is `cleanroom.marginals.count_table`, as on a party node.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cleanroom.accounting import cdp_rho
from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.marginals import count_table
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.noise import sample_discrete_gaussian
from cleanroom.schema import Schema
from cleanroom.synth.mst import MSTPlanner

IntArray = npt.NDArray[np.int64]


def measure_round(
    codes: npt.NDArray[np.integer],
    domain: Domain,
    spec: RoundSpec,
    rng: np.random.Generator,
    exact_noise: bool = False,
) -> list[Measurement]:
    """Noisy tables of one round: exact counts plus noise of variance sigma_total2 per cell."""
    measurements = []
    for clique in spec.cliques:
        shape = domain.project(clique).shape
        noise: npt.NDArray[np.float64] | IntArray
        if exact_noise:
            noise = sample_discrete_gaussian(spec.sigma_total2, int(np.prod(shape))).reshape(shape)
        else:
            noise = rng.normal(0.0, spec.stddev, shape)
        noisy = (count_table(codes, domain, clique) + noise).astype(np.float64)
        measurements.append(Measurement(clique, noisy, spec.stddev))
    return measurements


def synthesize(
    domain: Domain | Schema,
    codes: npt.NDArray[np.integer],
    rho: float,
    n_rows: int,
    rng: np.random.Generator,
    planner: MSTPlanner | None = None,
    exact_noise: bool = True,
) -> IntArray:
    """MST synthetic codes (n_rows, n_attrs) from `codes` at zCDP `rho` (all three rounds together).

    `domain` may be a `Schema` (its measured columns' domain); decode the result with `cleanroom.encoding`.
    """
    if isinstance(domain, Schema):
        domain = domain.domain
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(domain):
        raise InvalidInput(f"synthesize: codes shape {codes.shape} does not match {len(domain)} attributes")
    if codes.size and (codes.min() < 0 or np.any(codes.max(axis=0) >= np.array(domain.shape))):
        raise InvalidInput("synthesize: codes fall outside the domain")
    planner = planner or MSTPlanner(domain, rho)
    if planner.domain != domain or planner.rho_total != rho:
        raise InvalidInput("synthesize: the planner's domain or rho differs from the arguments")
    measurements: list[Measurement] = []
    spec: RoundSpec | None = planner.first_round()
    while spec is not None:
        measurements += measure_round(codes, domain, spec, rng, exact_noise)
        spec = planner.next_round(measurements)
    return planner.estimate(measurements).sample(n_rows, rng)


def synthesize_dp(
    domain: Domain | Schema,
    codes: npt.NDArray[np.integer],
    epsilon: float,
    delta: float,
    n_rows: int,
    rng: np.random.Generator,
    exact_noise: bool = True,
) -> IntArray:
    """`synthesize` at (epsilon, delta)-DP: rho from the tight zCDP conversion `cdp_rho`."""
    return synthesize(domain, codes, cdp_rho(epsilon, delta), n_rows, rng, exact_noise=exact_noise)
