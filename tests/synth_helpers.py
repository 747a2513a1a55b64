"""Small data generators and exact counting shared by the synthesizer tests."""

from __future__ import annotations

import numpy as np

from cleanroom.domain import Clique, Domain
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.synth.centralised import measure_round
from cleanroom.synth.planners import Planner

TREE_DOMAIN = Domain(("a", "b", "c", "d", "e"), (3, 4, 2, 5, 3))
TREE_EDGES = {("a", "b"), ("b", "c"), ("a", "d"), ("d", "e")}


def tree_data(rng: np.random.Generator, n: int) -> np.ndarray:
    """Records from a known tree a-b, b-c, a-d, d-e with strong dependencies along its edges."""
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(0, 2, n)) % 4
    c = ((b > 1) ^ (rng.random(n) < 0.1)).astype(np.int64)
    d = (2 * a + rng.integers(0, 2, n)) % 5
    e = np.where(rng.random(n) < 0.8, d % 3, rng.integers(0, 3, n))
    return np.stack([a, b, c, d, e], axis=1)


def count(codes: np.ndarray, domain: Domain, clique: Clique) -> np.ndarray:
    shape = domain.project(clique).shape
    flat = np.ravel_multi_index(tuple(codes[:, domain.index(x)] for x in clique), shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.float64)


def exact(codes: np.ndarray, domain: Domain, cliques: list[Clique], stddev: float = 1.0) -> list[Measurement]:
    return [Measurement(c, count(codes, domain, c), stddev) for c in cliques]


def run_rounds(
    planner: Planner, domain: Domain, codes: np.ndarray, rng: np.random.Generator, noise: bool = True
) -> tuple[list[RoundSpec], list[Measurement]]:
    """Every round the planner plans, counted on `codes` with Gaussian noise from `rng` (or none)."""
    specs: list[RoundSpec] = []
    measurements: list[Measurement] = []
    spec = planner.first_round()
    while spec is not None:
        specs.append(spec)
        if noise:
            measurements += measure_round(codes, domain, spec, rng)
        else:
            measurements += [Measurement(c, count(codes, domain, c), spec.stddev) for c in spec.cliques]
        spec = planner.next_round(measurements)
    return specs, measurements
