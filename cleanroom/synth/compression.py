"""Domain compression decided from the released noisy 1-way marginals (pure post-processing, no privacy cost).

MST (McKenna, Miklau, Sheldon 2021, Sec. 4) merges the levels of each attribute whose noisy 1-way count is
below 3 sigma into one level before measuring any pair, so that pair tables have fewer, fuller cells. Here the
parties keep counting over the full schema domain (the release kind never changes); the coordinator maps every
released table onto the compressed domain by summing cells, which is post-processing of the released noisy
sums. A merged cell then carries the noise of all the cells it sums (variance sigma^2 times their number), so
each compressed measurement keeps a per-cell variance (`CellMeasurement`), which the fit weights by.

Decisions, per attribute, from its noisy 1-way count y_i (noise stddev s) and a threshold z (default 3):
- a level with y_i >= z s keeps its own compressed level;
- a reserved level (`__missing__`, `__other__`: `Compression.special`) below z s is dropped: the model gives
  it no mass and sampling never emits it. With z = 3 a level that never occurs survives with probability
  1.3e-3 (P(N(0, 1) > 3)), so data without missing values gives synthetic data without empty cells;
- the other levels below z s ("rare") form one merged level; the model estimates its mass like any other
  level's, and sampling splits it among them in proportion to their noisy counts clipped at zero
  (uniformly if all are <= 0), like MST's decompression (which splits uniformly);
- an attribute keeps at least one level (its largest).
Ordinal attributes (numerical bins) merge rare bins only with adjacent ones: each maximal run of rare
neighbouring bins is its own merged level, so a merged level never joins the two tails of a range. An ordinal
attribute may also be capped at `max_levels` levels: neighbouring groups are joined into runs of about equal
noisy mass (`equal_mass_groups`; reserved levels stay apart), e.g. for a regression target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement
from cleanroom.synth.junction_tree import JunctionTree
from cleanroom.synth.model import GraphicalModel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class CellMeasurement(Measurement):
    """A measurement whose cells carry different noise variances (`cell_variance`, same shape as the table).

    `stddev` is the largest cell's stddev (what a scalar-noise reader would assume, on the safe side).
    """

    cell_variance: FloatArray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cell_variance is None:
            return
        variance = np.array(self.cell_variance, dtype=np.float64)
        if variance.shape != self.noisy_values.shape or not np.all(variance > 0):
            raise InvalidInput(
                f"CellMeasurement {self.clique}: cell_variance must be > 0, shaped like the table"
            )
        variance.setflags(write=False)
        object.__setattr__(self, "cell_variance", variance)


def cell_variance(m: Measurement) -> float | FloatArray:
    """Per-cell noise variance of a measurement: an array for a `CellMeasurement`, else a number."""
    if isinstance(m, CellMeasurement) and m.cell_variance is not None:
        return m.cell_variance
    return m.variance


@dataclass(frozen=True)
class LevelMap:
    """One attribute: `groups[k]` are the original levels of compressed level k, `weights[k]` their shares."""

    size: int
    groups: tuple[tuple[int, ...], ...]
    weights: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        flat = [level for group in self.groups for level in group]
        if not self.groups or len(set(flat)) != len(flat) or any(not 0 <= v < self.size for v in flat):
            raise InvalidInput(
                f"LevelMap: groups {self.groups} must be disjoint non-empty levels of {self.size}"
            )
        for group, weights in zip(self.groups, self.weights, strict=True):
            if len(group) != len(weights) or abs(sum(weights) - 1) > 1e-9 or min(weights) < 0:
                raise InvalidInput(
                    f"LevelMap: weights {weights} of group {group} must be shares summing to 1"
                )

    @property
    def is_identity(self) -> bool:
        return self.groups == tuple((i,) for i in range(self.size))

    def matrix(self) -> FloatArray:
        """(compressed levels x original levels) 0/1 matrix summing original cells into compressed ones."""
        out = np.zeros((len(self.groups), self.size))
        for k, group in enumerate(self.groups):
            out[k, list(group)] = 1.0
        return out


def _identity(size: int) -> LevelMap:
    return LevelMap(size, tuple((i,) for i in range(size)), tuple((1.0,) for _ in range(size)))


def _shares(values: FloatArray) -> tuple[float, ...]:
    clipped = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    if clipped.sum() <= 0:
        return tuple([1.0 / len(values)] * len(values))
    return tuple(float(v) for v in clipped / clipped.sum())


def _rare_runs(rare: list[int], ordinal: bool) -> list[list[int]]:
    if not ordinal:
        return [rare] if rare else []
    runs: list[list[int]] = []
    for level in rare:
        if runs and runs[-1][-1] == level - 1:
            runs[-1].append(level)
        else:
            runs.append([level])
    return runs


def equal_mass_groups(counts: FloatArray, levels: int) -> list[tuple[int, ...]]:
    """Levels 0..n-1 joined into at most `levels` neighbouring runs of about equal (clipped) mass."""
    return _equal_mass([(i,) for i in range(len(counts))], np.asarray(counts, dtype=np.float64), levels, ())


def _equal_mass(
    groups: list[tuple[int, ...]], counts: FloatArray, max_levels: int, special: Sequence[int]
) -> list[tuple[int, ...]]:
    """Neighbouring groups of an ordinal attribute joined into at most `max_levels` of about equal noisy mass
    (reserved levels stay on their own)."""
    reserved = [g for g in groups if g[0] in special]
    bins = [g for g in groups if g[0] not in special]
    mass = np.array([max(float(np.sum(counts[list(g)])), 0.0) for g in bins])
    levels = max(max_levels - len(reserved), 1)
    if len(bins) <= levels:
        return groups
    share = np.cumsum(mass) / max(float(mass.sum()), 1e-12)
    cut = np.minimum((share * levels - 1e-9).astype(np.int64), levels - 1)
    cut = np.maximum.accumulate(np.maximum(cut, 0))
    merged: dict[int, tuple[int, ...]] = {}
    for index, group in zip(cut, bins, strict=True):
        merged[int(index)] = merged.get(int(index), ()) + group
    return sorted([*merged.values(), *reserved], key=lambda g: g[0])


def level_map(
    counts: FloatArray,
    stddev: float,
    z: float,
    special: Sequence[int] = (),
    ordinal: bool = False,
    max_levels: int = 0,
) -> LevelMap:
    """The compression of one attribute from its noisy 1-way `counts` (see the module docstring)."""
    counts = np.asarray(counts, dtype=np.float64)
    threshold = z * stddev
    kept = [i for i, y in enumerate(counts) if y >= threshold]
    rare = [i for i, y in enumerate(counts) if y < threshold and i not in special]
    groups: list[tuple[int, ...]] = [(i,) for i in kept]
    groups += [tuple(run) for run in _rare_runs(rare, ordinal)]
    if not groups:
        groups = [(int(np.argmax(counts)),)]
    groups.sort(key=lambda g: g[0])
    if ordinal and max_levels and len(groups) > max_levels:
        groups = _equal_mass(groups, counts, max_levels, special)
    weights = tuple(_shares(counts[list(g)]) if len(g) > 1 else (1.0,) for g in groups)
    return LevelMap(len(counts), tuple(groups), weights)


@dataclass(frozen=True)
class Compression:
    """Per-attribute level maps of `domain`; `compressed` is the domain the model is fitted on."""

    domain: Domain
    maps: tuple[LevelMap, ...]
    _matrices: dict[str, FloatArray] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.maps) != len(self.domain) or any(
            m.size != s for m, s in zip(self.maps, self.domain.shape, strict=True)
        ):
            raise InvalidInput("Compression: one level map per attribute, sized like the domain")

    @classmethod
    def identity(cls, domain: Domain) -> Compression:
        return cls(domain, tuple(_identity(s) for s in domain.shape))

    @classmethod
    def from_one_ways(
        cls,
        domain: Domain,
        one_way: Sequence[Measurement],
        z: float = 3.0,
        special: Mapping[str, Sequence[int]] | None = None,
        ordinal: frozenset[str] = frozenset(),
        max_levels: Mapping[str, int] | None = None,
    ) -> Compression:
        """Decide every attribute's compression from its noisy 1-way measurement (post-processing)."""
        special = special or {}
        by_attr = {m.clique[0]: m for m in one_way if len(m.clique) == 1}
        maps = []
        for attr in domain.attrs:
            m = by_attr.get(attr)
            if m is None:
                raise InvalidInput(f"Compression: no 1-way measurement of {attr!r}")
            variance = cell_variance(m)
            stddev = math.sqrt(float(np.max(variance)))
            limit = (max_levels or {}).get(attr, 0)
            maps.append(level_map(m.noisy_values, stddev, z, special.get(attr, ()), attr in ordinal, limit))
        return cls(domain, tuple(maps))

    @property
    def compressed(self) -> Domain:
        return Domain(self.domain.attrs, tuple(len(m.groups) for m in self.maps))

    def level_map(self, attr: str) -> LevelMap:
        return self.maps[self.domain.index(attr)]

    def _matrix(self, attr: str) -> FloatArray:
        if attr not in self._matrices:
            self._matrices[attr] = self.level_map(attr).matrix()
        return self._matrices[attr]

    def project(self, m: Measurement) -> Measurement:
        """`m` on the compressed domain: cells summed per group, dropped levels left out, variances summed."""
        m.check_domain(self.domain)
        if all(self.level_map(a).is_identity for a in m.clique):
            return m
        values = np.asarray(m.noisy_values)
        variance = np.broadcast_to(np.asarray(cell_variance(m), dtype=np.float64), values.shape)
        for axis, attr in enumerate(m.clique):
            matrix = self._matrix(attr)
            values = np.moveaxis(np.tensordot(matrix, values, axes=([1], [axis])), 0, axis)
            variance = np.moveaxis(np.tensordot(matrix, variance, axes=([1], [axis])), 0, axis)
        stddev = math.sqrt(float(variance.max()))
        return CellMeasurement(m.clique, values, stddev, cell_variance=variance)

    def expand(self, codes: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        """Codes over the compressed domain -> codes over the original domain (merged levels split)."""
        codes = np.asarray(codes, dtype=np.int64)
        out = np.empty_like(codes)
        for j, level_map_j in enumerate(self.maps):
            column = codes[:, j]
            firsts = np.array([g[0] for g in level_map_j.groups], dtype=np.int64)
            out[:, j] = firsts[column]
            for k, group in enumerate(level_map_j.groups):
                if len(group) > 1:
                    rows = np.flatnonzero(column == k)
                    out[rows, j] = rng.choice(np.array(group), size=rows.size, p=level_map_j.weights[k])
        return out


@dataclass(frozen=True, eq=False)
class CompressedModel:
    """A graphical model fitted on `compression.compressed`, read and sampled on the original domain."""

    model: GraphicalModel
    compression: Compression

    def __post_init__(self) -> None:
        if self.model.domain != self.compression.compressed:
            raise InvalidInput("CompressedModel: the model's domain is not the compressed domain")

    @property
    def domain(self) -> Domain:
        return self.compression.domain

    @property
    def tree(self) -> JunctionTree:
        return self.model.tree

    @property
    def total(self) -> float:
        return self.model.total

    def marginal(self, clique: Sequence[str]) -> FloatArray:
        """Count table of `clique` (canonical order) on the original domain; merged levels split by weight."""
        table = self.model.marginal(clique)
        for axis, attr in enumerate(clique):
            level_map_a = self.compression.level_map(attr)
            spread = np.zeros((level_map_a.size, len(level_map_a.groups)))
            for k, (group, weights) in enumerate(zip(level_map_a.groups, level_map_a.weights, strict=True)):
                spread[list(group), k] = weights
            table = np.moveaxis(np.tensordot(spread, table, axes=([1], [axis])), 0, axis)
        return table

    def sample(self, n_rows: int, rng: np.random.Generator) -> IntArray:
        """`n_rows` records as original-domain codes (n_rows, n_attrs)."""
        return self.compression.expand(self.model.sample(n_rows, rng), rng)
