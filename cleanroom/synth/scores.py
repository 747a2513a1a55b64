"""A proposed release kind (not wired): one noisy linear score per candidate pair, instead of its whole table.

Selection from cheap noisy *tables* (`cleanroom.synth.selection`) is the weak point of a table-only
synthesizer: a pair whose dependence is spread thinly over many cells (bike sharing's hour x count, 400
cells) is invisible in a screen whose noise per cell exceeds the signal per cell, while MST's exponential
mechanism sees its L1 error at once. A score that is *linear in the counts* adds up across parties, so
secure aggregation can sum it like a table, but it carries one noise draw per pair instead of one per cell:

    score_p(D) = sum_c w_p[c] x_p[c],   w_p[c] = round(S clip((y_p[c] - mu_p[c]) / (k s_p[c]), -1, 1))

where y_p is the pair's released screen table (noise sd s_p per cell), mu_p the coordinator's model table and
S the fixed-point scale. The weights are functions of released data only (post-processing), so publishing
them costs nothing; the coordinator then estimates the pair's weighted residual sum_c w_p[c] (x_p[c] -
mu_p[c]) / S as (noisy score - S-weighted model sum) / S, an unbiased estimate whose noise is one Gaussian
of sd sigma / S, against sqrt(cells) * sigma-sized noise for a table.

Sensitivity (add/remove one record): the record falls in exactly one cell c_p of every pair table, so each
score changes by w_p[c_p], |w_p[c_p]| <= S; the vector of K scores changes by at most S in every coordinate:
L2 sensitivity S * sqrt(K), L1 S * K (exactly the Gaussian mechanism of a round of K one-cell tables scaled
by S), so rho = K S^2 / (2 sigma^2) for noise variance sigma^2 in the sum.

Wiring it would need: a `wire.RoundRequest` kind carrying the candidate pairs and their int64 weight tables
(public; size of the screen round), a party-side check that every |weight| <= S and the charge above
(`score_rho`), `party_scores` on the members' codes (the party's own counts never leave it), and a planner
round between the screen and the refinements that asks for the scores of every candidate pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.marginals import count_table
from cleanroom.measurement import Measurement
from cleanroom.synth.compression import cell_variance

DEFAULT_SCORE_SCALE = 1 << 10
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def score_weights(
    screen: Measurement, model_table: FloatArray, scale: int = DEFAULT_SCORE_SCALE, spread: float = 1.0
) -> IntArray:
    """Public integer weights in [-scale, scale] for one pair, from its released screen and the model."""
    if not isinstance(scale, int) or scale < 1:
        raise InvalidInput(f"scale ({scale!r}) must be a positive integer")
    values = np.asarray(screen.noisy_values)
    if np.shape(model_table) != values.shape:
        raise InvalidInput(f"model table {np.shape(model_table)} does not match the screen {values.shape}")
    stddev = np.sqrt(np.broadcast_to(cell_variance(screen), values.shape))
    ratio = (values - np.asarray(model_table)) / (spread * stddev)
    weights: IntArray = np.rint(scale * np.clip(ratio, -1.0, 1.0)).astype(np.int64)
    return weights


def party_scores(
    codes: npt.NDArray[np.integer], domain: Domain, pairs: Sequence[Clique], weights: Sequence[IntArray]
) -> IntArray:
    """One party's int64 score vector: sum over cells of weight * its own count, per pair (additive)."""
    if len(pairs) != len(weights):
        raise InvalidInput(f"{len(pairs)} pairs but {len(weights)} weight tables")
    out = np.zeros(len(pairs), dtype=np.int64)
    for i, (pair, weight) in enumerate(zip(pairs, weights, strict=True)):
        table = count_table(np.asarray(codes), domain, pair)
        if np.shape(weight) != table.shape:
            raise InvalidInput(f"weights of {pair} have shape {np.shape(weight)}, the table {table.shape}")
        out[i] = int(np.sum(np.asarray(weight, dtype=np.int64) * table))
    return out


def score_sensitivity_l2(n_pairs: int, scale: int = DEFAULT_SCORE_SCALE) -> float:
    """L2 sensitivity of a score vector of `n_pairs` pairs (see the module docstring)."""
    return scale * math.sqrt(n_pairs)


def score_rho(n_pairs: int, sigma2: float, scale: int = DEFAULT_SCORE_SCALE) -> float:
    """zCDP cost of one score round with total noise variance `sigma2` (fixed-point units) per score."""
    return score_sensitivity_l2(n_pairs, scale) ** 2 / (2 * sigma2)


def residual_estimates(
    noisy_scores: FloatArray,
    model_tables: Sequence[FloatArray],
    weights: Sequence[IntArray],
    scale: int = DEFAULT_SCORE_SCALE,
) -> FloatArray:
    """Per pair, the estimated weighted residual sum_c w[c] (x[c] - mu[c]) / scale from the summed scores."""
    expected = np.array([float(np.sum(w * m)) for w, m in zip(weights, model_tables, strict=True)])
    estimates: FloatArray = (np.asarray(noisy_scores, dtype=np.float64) - expected) / scale
    return estimates
