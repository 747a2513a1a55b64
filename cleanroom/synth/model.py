"""A discrete graphical model on a junction tree: log-potentials, belief propagation and fast sampling.

The distribution is p(x) proportional to exp(sum_C theta_C(x_C)) over the junction tree's cliques; `total`
is the number of records it stands for, so `marginals()` are counts. Belief propagation (sum-product in
log space, one upward and one downward pass) gives every clique marginal exactly; they are positive and
mutually consistent by construction, whatever noise the fitted measurements carried.

Sampling is ancestral along the tree: the root clique is drawn from its marginal, then each child clique
from its conditional given the separator already drawn. Each step is vectorised over all rows: the
conditional table's rows are laid end to end on [0, n_separator_cells) as cumulative sums offset by the row
index, so one `np.searchsorted` of (separator index + uniform) picks every row's new cell at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.synth.junction_tree import JunctionTree

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def sum_axes(clique: Clique, keep: Sequence[str]) -> tuple[int, ...]:
    """Axes of a `clique` table to sum out to keep only `keep` (both in canonical order)."""
    kept = set(keep)
    return tuple(i for i, a in enumerate(clique) if a not in kept)


def expand_shape(domain: Domain, clique: Clique, sub: Sequence[str]) -> tuple[int, ...]:
    """Shape that broadcasts a `sub` table (canonical order) against a `clique` table."""
    kept = set(sub)
    return tuple(domain.size(a) if a in kept else 1 for a in clique)


def logsumexp(table: FloatArray, axes: tuple[int, ...]) -> FloatArray:
    if not axes:
        return table
    peak = table.max(axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    summed = np.log(np.exp(table - peak).sum(axis=axes, keepdims=True)) + peak
    return np.asarray(np.squeeze(summed, axis=axes), dtype=np.float64)


@dataclass(frozen=True)
class _Passes:
    """Per tree node (None at the root): the axes summed out to its separator, and the shapes that broadcast
    a separator table against the node and against its parent. Computed once per (domain, tree)."""

    to_separator: tuple[tuple[int, ...] | None, ...]
    parent_to_separator: tuple[tuple[int, ...] | None, ...]
    in_node: tuple[tuple[int, ...] | None, ...]
    in_parent: tuple[tuple[int, ...] | None, ...]


@lru_cache(maxsize=16)
def _passes(domain: Domain, tree: JunctionTree) -> _Passes:
    cliques = tree.cliques
    rows: list[tuple[Any, Any, Any, Any]] = []
    for node, parent in enumerate(tree.parent):
        if parent < 0:
            rows.append((None, None, None, None))
            continue
        sep = tree.separator[node]
        rows.append((
            sum_axes(cliques[node], sep), sum_axes(cliques[parent], sep),
            expand_shape(domain, cliques[node], sep), expand_shape(domain, cliques[parent], sep),
        ))  # fmt: skip
    return _Passes(*(tuple(column) for column in zip(*rows, strict=True)))


@dataclass(frozen=True, eq=False)
class GraphicalModel:
    """Log-potentials `theta[i]` on `tree.cliques[i]` (canonical axes) for a population of `total` records."""

    domain: Domain
    tree: JunctionTree
    theta: tuple[FloatArray, ...]
    total: float

    def __post_init__(self) -> None:
        if len(self.theta) != len(self.tree.cliques):
            raise InvalidInput(
                f"GraphicalModel: theta has {len(self.theta)} tables for {len(self.tree.cliques)} cliques"
            )
        for clique, table in zip(self.tree.cliques, self.theta, strict=True):
            if table.shape != self.domain.project(clique).shape:
                raise InvalidInput(f"GraphicalModel: theta table for {clique} has shape {table.shape}")
        if not self.total > 0:
            raise InvalidInput(f"GraphicalModel: total ({self.total}) must be > 0")

    def _expand(self, table: FloatArray, sub: Clique, clique: Clique) -> FloatArray:
        return table.reshape(expand_shape(self.domain, clique, sub))

    def log_beliefs(self) -> list[FloatArray]:
        """Normalised log-marginals of every clique (sum-product belief propagation)."""
        tree = self.tree
        passes = _passes(self.domain, tree)
        inbound = list(self.theta)  # replaced, never modified in place
        upward: dict[int, FloatArray] = {}
        for node in reversed(tree.order):
            parent = tree.parent[node]
            if parent >= 0:
                upward[node] = logsumexp(inbound[node], passes.to_separator[node])  # type: ignore[arg-type]
                inbound[parent] = inbound[parent] + upward[node].reshape(passes.in_parent[node])
        beliefs = list(inbound)
        for node in tree.order[1:]:
            parent = tree.parent[node]
            outgoing = beliefs[parent] - upward[node].reshape(passes.in_parent[node])
            message = logsumexp(outgoing, passes.parent_to_separator[node])  # type: ignore[arg-type]
            beliefs[node] = inbound[node] + message.reshape(passes.in_node[node])
        root = tree.order[0]
        log_z = float(logsumexp(beliefs[root], tuple(range(beliefs[root].ndim))))
        return [b - log_z for b in beliefs]

    def marginals(self) -> list[FloatArray]:
        """Count tables (summing to `total`) of every clique of the junction tree."""
        return [self.total * np.exp(b) for b in self.log_beliefs()]

    def marginal(self, clique: Sequence[str]) -> FloatArray:
        """Count table of any clique contained in one clique of the tree (canonical order)."""
        canonical = self.domain.canonical(tuple(clique))
        try:
            index = self.tree.containing(canonical)
        except KeyError as exc:
            raise InvalidInput(f"GraphicalModel.marginal: {exc.args[0]}") from None
        table = self.total * np.exp(self.log_beliefs()[index])
        return np.asarray(table.sum(axis=sum_axes(self.tree.cliques[index], canonical)), dtype=np.float64)

    def sample(self, n_rows: int, rng: np.random.Generator) -> IntArray:
        """`n_rows` independent records as codes of shape (n_rows, n_attrs), column j = domain attribute j."""
        if n_rows < 0:
            raise InvalidInput(f"GraphicalModel.sample: n_rows ({n_rows}) must be >= 0")
        codes = np.zeros((n_rows, len(self.domain)), dtype=np.int64)
        beliefs = self.log_beliefs()
        for node in self.tree.order:
            self._sample_clique(node, beliefs[node], codes, rng)
        return codes

    def _sample_clique(
        self, node: int, log_belief: FloatArray, codes: IntArray, rng: np.random.Generator
    ) -> None:
        clique, sep = self.tree.cliques[node], self.tree.separator[node]
        new = tuple(a for a in clique if a not in sep)
        if not new:
            return
        axes = [clique.index(a) for a in sep] + [clique.index(a) for a in new]
        sep_shape = tuple(self.domain.size(a) for a in sep)
        new_shape = tuple(self.domain.size(a) for a in new)
        joint = np.exp(np.transpose(log_belief, axes)).reshape(int(np.prod(sep_shape)), -1)
        sep_index = (
            np.ravel_multi_index(tuple(codes[:, self.domain.index(a)] for a in sep), sep_shape)
            if sep
            else np.zeros(codes.shape[0], dtype=np.int64)
        )
        picked = _draw_rows(joint, sep_index, rng)
        for a, column in zip(new, np.unravel_index(picked, new_shape), strict=True):
            codes[:, self.domain.index(a)] = column


def _draw_rows(joint: FloatArray, row_index: IntArray, rng: np.random.Generator) -> IntArray:
    """For each entry r of `row_index`, a column drawn with probabilities proportional to joint[r]."""
    mass = joint.sum(axis=1, keepdims=True)
    conditional = np.where(mass > 0, joint / np.where(mass > 0, mass, 1.0), 1.0 / joint.shape[1])
    cumulative = np.cumsum(conditional, axis=1)
    cumulative[:, -1] = 1.0
    offsets = np.arange(joint.shape[0], dtype=np.float64)[:, None]
    flat = (cumulative + offsets).ravel()
    targets = row_index + rng.random(row_index.shape[0])
    picked = np.searchsorted(flat, targets, side="right") - row_index * joint.shape[1]
    return np.asarray(np.clip(picked, 0, joint.shape[1] - 1), dtype=np.int64)
