"""Pooled versus split data: the federated measurement carries exactly the promised noise.

Each of k parties counts its own tables and adds its share N_Z(0, sigma_total^2 / k); the sum minus the
pooled tables is the total noise, whose variance must be sigma_total^2 (the MST planner's calibration).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from cleanroom.encoding import encode
from cleanroom.marginals import count_tables, flatten_tables
from cleanroom.noise import party_noise_share
from cleanroom.sample_data import generate, sample_schema, split_parties
from cleanroom.synth import MSTPlanner


@pytest.mark.parametrize("n_parties", [3, 10])
def test_summed_party_tables_carry_exactly_the_promised_noise_variance(n_parties: int) -> None:
    schema = sample_schema()
    frame = generate(6000, seed=7)
    parts = split_parties(frame, n_parties, seed=11, skew=0.5)
    domain = schema.domain
    spec = MSTPlanner(domain, rho_total=0.5, n_min=n_parties, n_parties=n_parties).first_round()
    pooled = flatten_tables(count_tables(encode(schema, frame).codes, domain, spec.cliques))
    sigma_party2 = Fraction(spec.sigma_total2) / n_parties
    residuals = []
    for _ in range(40):  # repeat the round to get enough noise samples for a variance test
        total = np.zeros_like(pooled)
        for part in parts:
            tables = flatten_tables(count_tables(encode(schema, part).codes, domain, spec.cliques))
            total += tables + party_noise_share(tables.size, sigma_party2)
        residuals.append(total - pooled)
    noise = np.concatenate(residuals).astype(np.float64)
    expected = float(spec.sigma_total2)
    # chi-square test of the variance: sum(x^2)/sigma^2 ~ chi2(N) for mean-zero noise
    statistic = float(np.sum(noise**2) / expected)
    p_two_sided = 2 * min(stats.chi2.cdf(statistic, noise.size), stats.chi2.sf(statistic, noise.size))
    assert p_two_sided > 1e-4, (noise.var(), expected)
    assert abs(noise.mean()) < 5 * np.sqrt(expected / noise.size)


def test_split_tables_without_noise_equal_the_pooled_tables_exactly() -> None:
    schema = sample_schema()
    frame = generate(3000, seed=3)
    domain = schema.domain
    cliques = tuple((a, b) for i, a in enumerate(domain.attrs) for b in domain.attrs[i + 1 :])
    pooled = flatten_tables(count_tables(encode(schema, frame).codes, domain, cliques))
    for n_parties in (3, 10):
        parts = split_parties(frame, n_parties, seed=5, skew=1.0)
        summed = sum(flatten_tables(count_tables(encode(schema, p).codes, domain, cliques)) for p in parts)
        np.testing.assert_array_equal(summed, pooled)
