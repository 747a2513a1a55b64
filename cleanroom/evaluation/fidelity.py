"""Fidelity: how closely the synthetic data's 1-way and 2-way distributions match the real data's.

Two measures, both functions of marginal count tables only:

- total variation distance (TVD) per clique, ``0.5 * sum |p_real - p_syn|`` over the clique's cells;
- association difference per attribute pair: ``|V_real - V_syn|`` where V is Cramér's V of the pair's
  contingency table (every encoded attribute is categorical or binned, so an association coefficient of the
  tables stands in for a correlation; it is 0 for independence and 1 for a deterministic relation).

Two additive forms (each party computes, the vectors are noised and summed by secure aggregation):

- **count tables** (`fidelity_statistics` -> `combined_fidelity`): the party's real count tables of the agreed
  cliques, concatenated (canonical domain order, C-order ravel, as the marginal releases); the coordinator
  compares the summed noisy tables with the synthetic data's. Exact for the pooled data and gives the
  association figures too, but one record adds 1 to one cell of every table (**L2 = sqrt(len(cliques))**,
  `fidelity_sensitivity_l2`) and the noise lands in every cell: all 2-way tables of Adult hold ~40k cells,
  and at rho ~0.0015 the noise (sd ~200 per cell) inflates the mean 2-way TVD from 0.07 to 0.25. Use it
  with few cliques or a generous budget.
- **per-party distances** (`tvd_statistics` -> `combined_tvd`, recommended): ``[S * n_p, round(S * n_p *
  TVD(real_p, synthetic)) per clique]`` with S = `DEFAULT_TVD_SCALE`; the summed vector gives the
  row-weighted mean of the parties' own TVDs, an upper bound on the pooled TVD (triangle inequality) that
  also contains each party's finite-sample noise. One record moves the count by S and each clique's entry by
  at most S (``0.5 * sum |c - n q|`` changes by at most ``1 - q_cell``; the entry is computed exactly in
  integers and rounded with ``floor(x + 1/2)``, which commutes with integer shifts, so rounding adds
  nothing): **L2 = S * sqrt(1 + len(cliques))** (`tvd_sensitivity_l2`), and the noise is one number per
  clique. The parties need the synthetic data.

Negative noisy counts are clipped and tables renormalised. The per-party detail (`local_fidelity`, exact, no
noise) stays in that party's report.
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


DEFAULT_TVD_SCALE = 2**10


def tvd_sensitivity_l2(cliques: Sequence[Clique], scale: int = DEFAULT_TVD_SCALE) -> float:
    """Per-record L2 sensitivity of `tvd_statistics`."""
    return scale * math.sqrt(1 + len(cliques))


def scaled_party_tvd(
    real_table: ArrayLike, synthetic_table: ArrayLike, scale: int = DEFAULT_TVD_SCALE
) -> int:
    """``round(scale * n * TVD(real, synthetic))`` computed exactly in integers (halves round up).

    With real counts c (n rows) and synthetic counts s (m rows), ``n * TVD = sum |m c - n s| / (2 m)``, an
    exact rational; an empty synthetic table counts as uniform. Rounding is ``floor(x + 1/2)``, which is
    monotone and commutes with integer shifts, so the entry moves by at most `scale` when one real record
    is added or removed (proof in docs/evaluation.md).
    """
    real = np.asarray(real_table, dtype=np.int64).ravel()
    synthetic = np.asarray(synthetic_table, dtype=np.int64).ravel()
    if synthetic.sum() <= 0:
        synthetic = np.ones_like(synthetic)
    n, m = int(real.sum()), int(synthetic.sum())
    numerator = int(np.abs(m * real - n * synthetic).sum())
    return (scale * numerator + m) // (2 * m)


def tvd_statistics(
    real_codes: ArrayLike,
    synthetic_codes: ArrayLike,
    domain: Domain,
    cliques: Sequence[Clique],
    scale: int = DEFAULT_TVD_SCALE,
) -> IntVector:
    """One party's additive vector ``[S * n_p, round(S * n_p * TVD_clique) for each clique]``."""
    real = _check_codes(real_codes, domain, "real")
    synthetic = _check_codes(synthetic_codes, domain, "synthetic")
    entries = [scale * len(real)]
    for clique in cliques:
        entries.append(
            scaled_party_tvd(count_table(real, domain, clique), count_table(synthetic, domain, clique), scale)
        )
    return np.array(entries, dtype=np.int64)


def combined_tvd(
    summed_vector: ArrayLike, domain: Domain, cliques: Sequence[Clique], scale: int = DEFAULT_TVD_SCALE
) -> FidelityReport:
    """Row-weighted mean of the parties' TVDs per clique from the summed (noisy) `tvd_statistics`.

    The report has TVDs only (association figures are NaN: they are not additive).
    """
    values = np.asarray(summed_vector, dtype=np.float64).ravel()
    if values.size != 1 + len(cliques):
        raise InvalidInput(f"TVD vector has length {values.size}, expected {1 + len(cliques)}")
    rows = values[0]
    distances = [math.nan if rows <= 0 else min(max(float(v / rows), 0.0), 1.0) for v in values[1:]]
    one_way = {c[0]: d for c, d in zip(cliques, distances, strict=True) if len(c) == 1}
    two_way = {_pair(domain, c): d for c, d in zip(cliques, distances, strict=True) if len(c) == 2}
    unknown = np.full((len(domain), len(domain)), np.nan)
    return FidelityReport(domain.attrs, one_way, two_way, unknown, unknown.copy())


def _pair(domain: Domain, clique: Clique) -> tuple[str, str]:
    names = domain.canonical(clique)
    return names[0], names[1]


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
