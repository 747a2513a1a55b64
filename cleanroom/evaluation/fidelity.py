"""Fidelity: how closely the synthetic data's 1-way and 2-way distributions match the real data's.

Two measures, both functions of marginal count tables only:

- total variation distance (TVD) per clique, ``0.5 * sum |p_real - p_syn|`` over the clique's cells;
- association difference per attribute pair: ``|V_real - V_syn|`` where V is Cramér's V of the pair's
  contingency table (every encoded attribute is categorical or binned, so an association coefficient of the
  tables stands in for a correlation; it is 0 for independence and 1 for a deterministic relation).

Additive form (the choice made here): TVD against pooled data is not a sum of per-party TVDs, but it is a
function of the pooled count tables, which *are* additive. So each party returns its real count tables
(`fidelity_statistics`: the int64 concatenation of the tables of the agreed cliques, each in canonical domain
order, C-order ravel, exactly as the marginal releases), the vectors are noised and summed by secure
aggregation, and the coordinator calls `combined_fidelity(summed_vector, synthetic_codes, ...)`. One record
adds 1 to one cell of each table: **L2 = sqrt(len(cliques))** per record (`fidelity_sensitivity_l2`).
Noise can only inflate the combined TVD (negative noisy counts are clipped, tables renormalised), so with
little data or budget it is an upper-biased figure. The per-party detail (`local_fidelity`, exact, no noise)
stays in that party's report.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.marginals import count_table, split_vector

IntVector = NDArray[np.int64]
FloatArray = NDArray[np.float64]


def default_fidelity_cliques(domain: Domain, pairs: bool = True) -> tuple[Clique, ...]:
    """All 1-way cliques, then (if `pairs`) all 2-way cliques, in domain order."""
    singles = tuple((attr,) for attr in domain.attrs)
    if not pairs:
        return singles
    return singles + tuple(itertools.combinations(domain.attrs, 2))


def _check_codes(codes: ArrayLike, domain: Domain, what: str) -> NDArray[np.int64]:
    array = np.asarray(codes)
    if array.ndim != 2 or array.shape[1] != len(domain):
        raise InvalidInput(f"{what} codes have shape {array.shape}, expected (rows, {len(domain)})")
    array = array.astype(np.int64, copy=False)
    limits = np.asarray(domain.shape, dtype=np.int64)
    bad = (array < 0) | (array >= limits)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(
            f"{what} codes: row {row}, column {domain.attrs[col]!r} has code {array[row, col]}"
            f" outside [0, {limits[col]})"
        )
    return array


def fidelity_vector_length(domain: Domain, cliques: Sequence[Clique]) -> int:
    return sum(domain.project(c).size() for c in cliques)


def fidelity_sensitivity_l2(cliques: Sequence[Clique]) -> float:
    """Per-record L2 sensitivity of `fidelity_statistics` (one cell per table moves by 1)."""
    return math.sqrt(len(cliques))


def fidelity_statistics(codes: ArrayLike, domain: Domain, cliques: Sequence[Clique]) -> IntVector:
    """One party's additive fidelity vector: its real count tables of `cliques`, concatenated."""
    array = _check_codes(codes, domain, "real")
    tables = [count_table(array, domain, c).ravel() for c in cliques]
    return np.concatenate(tables).astype(np.int64) if tables else np.zeros(0, dtype=np.int64)


def split_tables(vector: ArrayLike, domain: Domain, cliques: Sequence[Clique]) -> list[FloatArray]:
    """Inverse of the concatenation: float tables (canonical axis order) of a summed vector."""
    values = np.asarray(vector, dtype=np.float64).ravel()
    expected = fidelity_vector_length(domain, cliques)
    if values.size != expected:
        raise InvalidInput(
            f"fidelity vector has length {values.size}, expected {expected} for {len(cliques)} cliques"
        )
    return list(split_vector(values, domain, cliques))


def _distribution(table: ArrayLike) -> FloatArray:
    clipped = np.clip(np.asarray(table, dtype=np.float64), 0.0, None)
    total = clipped.sum()
    return clipped / total if total > 0 else np.full(clipped.shape, 1.0 / clipped.size)


def total_variation(real_table: ArrayLike, synthetic_table: ArrayLike) -> float:
    """TVD between two count tables (negative counts clipped, each normalised to a distribution)."""
    return 0.5 * float(np.abs(_distribution(real_table) - _distribution(synthetic_table)).sum())


def cramers_v(table: ArrayLike) -> float:
    """Cramér's V of a 2-way count table (0 if either attribute is constant)."""
    joint = _distribution(table)
    rows, cols = joint.sum(axis=1), joint.sum(axis=0)
    joint = joint[rows > 0][:, cols > 0]
    rows, cols = rows[rows > 0], cols[cols > 0]
    levels = min(rows.size, cols.size) - 1
    if levels < 1:
        return 0.0
    expected = np.outer(rows, cols)
    phi2 = float((((joint - expected) ** 2) / expected).sum())
    return math.sqrt(min(phi2 / levels, 1.0))


@dataclass(frozen=True)
class FidelityReport:
    """TVD per clique and association (Cramér's V) matrices; pairs not among the cliques are NaN."""

    attrs: tuple[str, ...]
    one_way_tvd: dict[str, float]
    two_way_tvd: dict[tuple[str, str], float]
    association_real: FloatArray
    association_synthetic: FloatArray

    @property
    def association_difference(self) -> FloatArray:
        return np.abs(self.association_real - self.association_synthetic)

    def summary(self) -> dict[str, float]:
        """Mean/max of each measure (NaN when there is nothing to average)."""
        one, two = list(self.one_way_tvd.values()), list(self.two_way_tvd.values())
        upper = self.association_difference[np.triu_indices(len(self.attrs), k=1)]
        upper = upper[~np.isnan(upper)]
        return {
            "mean_one_way_tvd": float(np.mean(one)) if one else math.nan,
            "max_one_way_tvd": float(np.max(one)) if one else math.nan,
            "mean_two_way_tvd": float(np.mean(two)) if two else math.nan,
            "max_two_way_tvd": float(np.max(two)) if two else math.nan,
            "mean_association_difference": float(np.mean(upper)) if upper.size else math.nan,
            "max_association_difference": float(np.max(upper)) if upper.size else math.nan,
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (pairs keyed "a|b", NaN matrix cells as None)."""

        def matrix(values: FloatArray) -> list[list[float | None]]:
            return [[None if math.isnan(v) else float(v) for v in row] for row in values]

        return {
            "summary": self.summary(),
            "one_way_tvd": dict(self.one_way_tvd),
            "two_way_tvd": {f"{a}|{b}": v for (a, b), v in self.two_way_tvd.items()},
            "attrs": list(self.attrs),
            "association_real": matrix(self.association_real),
            "association_synthetic": matrix(self.association_synthetic),
            "association_difference": matrix(self.association_difference),
        }


def compare_tables(
    real_tables: Sequence[ArrayLike],
    synthetic_tables: Sequence[ArrayLike],
    domain: Domain,
    cliques: Sequence[Clique],
) -> FidelityReport:
    """Fidelity report from real and synthetic count tables of the same cliques (same layout)."""
    if not len(real_tables) == len(synthetic_tables) == len(cliques):
        raise InvalidInput(
            f"{len(real_tables)} real and {len(synthetic_tables)} synthetic tables for {len(cliques)} cliques"
        )
    d = len(domain)
    one_way: dict[str, float] = {}
    two_way: dict[tuple[str, str], float] = {}
    assoc_real, assoc_syn = np.full((d, d), np.nan), np.full((d, d), np.nan)
    np.fill_diagonal(assoc_real, 1.0)
    np.fill_diagonal(assoc_syn, 1.0)
    for clique, real, synthetic in zip(cliques, real_tables, synthetic_tables, strict=True):
        names = domain.canonical(clique)
        if len(names) == 1:
            one_way[names[0]] = total_variation(real, synthetic)
        elif len(names) == 2:
            two_way[(names[0], names[1])] = total_variation(real, synthetic)
            i, j = domain.index(names[0]), domain.index(names[1])
            assoc_real[i, j] = assoc_real[j, i] = cramers_v(real)
            assoc_syn[i, j] = assoc_syn[j, i] = cramers_v(synthetic)
        else:
            raise InvalidInput(f"fidelity cliques must have 1 or 2 attributes, got {clique}")
    return FidelityReport(domain.attrs, one_way, two_way, assoc_real, assoc_syn)


def local_fidelity(
    real_codes: ArrayLike, synthetic_codes: ArrayLike, domain: Domain, cliques: Sequence[Clique]
) -> FidelityReport:
    """Exact fidelity of the synthetic data against one party's own rows (stays in that party's report)."""
    real = _check_codes(real_codes, domain, "real")
    synthetic = _check_codes(synthetic_codes, domain, "synthetic")
    real_tables = [count_table(real, domain, c) for c in cliques]
    synthetic_tables = [count_table(synthetic, domain, c) for c in cliques]
    return compare_tables(real_tables, synthetic_tables, domain, cliques)


def combined_fidelity(
    summed_vector: ArrayLike, synthetic_codes: ArrayLike, domain: Domain, cliques: Sequence[Clique]
) -> FidelityReport:
    """Fidelity against the pooled real data, from the securely summed (noisy) `fidelity_statistics`."""
    synthetic = _check_codes(synthetic_codes, domain, "synthetic")
    real_tables = split_tables(summed_vector, domain, cliques)
    synthetic_tables = [count_table(synthetic, domain, c) for c in cliques]
    return compare_tables(real_tables, synthetic_tables, domain, cliques)
