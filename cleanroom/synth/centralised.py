"""Centralised one-call MST: count, noise, plan, fit and sample in one process (tests, benchmarks, demos).

The noise here is continuous Gaussian from `rng` added to the exact counts (the Gaussian mechanism with
the planner's sigma), which is fine for tests and benchmarks. Production noise is added by the parties
with `cleanroom.noise` (exact discrete Gaussian); TODO: use it here too once it lands, and count with
`cleanroom.marginals.count_table`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.synth.mst import MSTPlanner

IntArray = npt.NDArray[np.int64]


def count_table(codes: npt.NDArray[np.integer], domain: Domain, clique: Clique) -> IntArray:
    """Exact counts of `clique` (canonical order) over `codes` (n_rows, n_attrs)."""
    canonical = domain.canonical(clique)
    shape = domain.project(canonical).shape
    columns = tuple(np.asarray(codes[:, domain.index(a)], dtype=np.int64) for a in canonical)
    flat = np.ravel_multi_index(columns, shape) if codes.shape[0] else np.zeros(0, dtype=np.int64)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.int64)


def measure_round(
    codes: npt.NDArray[np.integer], domain: Domain, spec: RoundSpec, rng: np.random.Generator
) -> list[Measurement]:
    """Noisy tables of one round: exact counts plus N(0, sigma_total2) per cell."""
    stddev = spec.stddev
    return [
        Measurement(
            c, count_table(codes, domain, c) + rng.normal(0.0, stddev, domain.project(c).shape), stddev
        )
        for c in spec.cliques
    ]


def synthesize(
    domain: Domain,
    codes: npt.NDArray[np.integer],
    rho: float,
    n_rows: int,
    rng: np.random.Generator,
    planner: MSTPlanner | None = None,
) -> IntArray:
    """MST synthetic codes (n_rows, n_attrs) from `codes` at zCDP `rho` (all three rounds together)."""
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
        measurements += measure_round(codes, domain, spec, rng)
        spec = planner.next_round(measurements)
    return planner.estimate(measurements).sample(n_rows, rng)
