"""A discrete graphical model on a junction tree: log-potentials, belief propagation and fast sampling.

The distribution is p(x) proportional to exp(sum_C theta_C(x_C)) over the junction tree's cliques; `total`
is the number of records it stands for, so `marginals()` are counts. Belief propagation (sum-product in
log space, one upward and one downward pass) gives every clique marginal exactly; they are positive and
mutually consistent by construction, whatever noise the fitted measurements carried.

Sampling is ancestral along the tree: the root clique is drawn from its marginal, then each child clique
from its conditional given the separator already drawn. Each step is vectorised over all rows: the
conditional table's rows are laid end to end on [0, n_separator_cells) as cumulative sums offset by the row
index, so one `np.searchsorted` of (separator index + uniform) picks every row's new cell at once. The
uniforms are stratified within each separator group (`stratified_uniforms`): the m rows of a group get one
draw from each of [0, 1/m), ..., [(m-1)/m, 1), so every clique cell receives its expected count up to about
one row instead of a multinomial count (private-pgm's `synthetic_data` rounds counts for the same reason).
Sampling noise is a large part of a pair's TVD on small data: a 480-cell table of 12,500 multinomial rows
is off by about 0.08 in TVD from its own distribution. Each row's draw is still uniform, so the sample
remains a draw from the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    peak = np.max(table, axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    summed = np.log(np.sum(np.exp(table - peak), axis=axes, keepdims=True)) + peak
    return np.asarray(np.squeeze(summed, axis=axes), dtype=np.float64)


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

    def beliefs(self) -> list[FloatArray]:
        """Normalised marginals (probabilities) of every clique: sum-product belief propagation.

        Runs in linear space: each clique's potential is exp(theta - max theta) and every message is
        rescaled to sum 1, so nothing overflows or underflows; the constants dropped cancel when a belief
        is normalised (about four times faster than the same passes in log space).
        """
        tree, cliques = self.tree, self.tree.cliques
        inbound = [np.exp(t - np.max(t)) for t in self.theta]
        upward: dict[int, FloatArray] = {}
        for node in reversed(tree.order):
            parent = tree.parent[node]
            if parent >= 0:
                sep = tree.separator[node]
                message = _normalised(_sum_out(inbound[node], sum_axes(cliques[node], sep)))
                upward[node] = message
                inbound[parent] = inbound[parent] * self._expand(message, sep, cliques[parent])
        beliefs = list(inbound)
        for node in tree.order[1:]:
            parent, sep = tree.parent[node], tree.separator[node]
            below = self._expand(upward[node], sep, cliques[parent])
            outgoing = beliefs[parent] / np.where(below > 0, below, 1.0)
            message = _normalised(_sum_out(outgoing, sum_axes(cliques[parent], sep)))
            beliefs[node] = inbound[node] * self._expand(message, sep, cliques[node])
        return [_normalised(b) for b in beliefs]

    def log_beliefs(self) -> list[FloatArray]:
        """Logarithms of `beliefs()` (-inf where a cell has probability 0)."""
        with np.errstate(divide="ignore"):
            return [np.log(b) for b in self.beliefs()]

    def marginals(self) -> list[FloatArray]:
        """Count tables (summing to `total`) of every clique of the junction tree."""
        return [self.total * b for b in self.beliefs()]

    def marginal(self, clique: Sequence[str]) -> FloatArray:
        """Count table of any clique contained in one clique of the tree (canonical order)."""
        canonical = self.domain.canonical(tuple(clique))
        try:
            index = self.tree.containing(canonical)
        except KeyError as exc:
            raise InvalidInput(f"GraphicalModel.marginal: {exc.args[0]}") from None
        table = self.total * self.beliefs()[index]
        return np.asarray(table.sum(axis=sum_axes(self.tree.cliques[index], canonical)), dtype=np.float64)

    def sample(self, n_rows: int, rng: np.random.Generator) -> IntArray:
        """`n_rows` independent records as codes of shape (n_rows, n_attrs), column j = domain attribute j."""
        if n_rows < 0:
            raise InvalidInput(f"GraphicalModel.sample: n_rows ({n_rows}) must be >= 0")
        codes = np.zeros((n_rows, len(self.domain)), dtype=np.int64)
        beliefs = self.beliefs()
        for node in self.tree.order:
            self._sample_clique(node, beliefs[node], codes, rng)
        return codes

    def _sample_clique(
        self, node: int, belief: FloatArray, codes: IntArray, rng: np.random.Generator
    ) -> None:
        clique, sep = self.tree.cliques[node], self.tree.separator[node]
        new = tuple(a for a in clique if a not in sep)
        if not new:
            return
        axes = [clique.index(a) for a in sep] + [clique.index(a) for a in new]
        sep_shape = tuple(self.domain.size(a) for a in sep)
        new_shape = tuple(self.domain.size(a) for a in new)
        joint = np.transpose(belief, axes).reshape(int(np.prod(sep_shape)), -1)
        sep_index = (
            np.ravel_multi_index(tuple(codes[:, self.domain.index(a)] for a in sep), sep_shape)
            if sep
            else np.zeros(codes.shape[0], dtype=np.int64)
        )
        picked = _draw_rows(joint, sep_index, rng)
        for a, column in zip(new, np.unravel_index(picked, new_shape), strict=True):
            codes[:, self.domain.index(a)] = column


def _sum_out(table: FloatArray, axes: tuple[int, ...]) -> FloatArray:
    return np.asarray(table.sum(axis=axes) if axes else table, dtype=np.float64)


def _normalised(table: FloatArray) -> FloatArray:
    mass = float(table.sum())
    return table / mass if mass > 0 else np.full_like(table, 1.0 / table.size)


def _draw_rows(joint: FloatArray, row_index: IntArray, rng: np.random.Generator) -> IntArray:
    """For each entry r of `row_index`, a column drawn with probabilities proportional to joint[r]."""
    mass = joint.sum(axis=1, keepdims=True)
    conditional = np.where(mass > 0, joint / np.where(mass > 0, mass, 1.0), 1.0 / joint.shape[1])
    cumulative = np.cumsum(conditional, axis=1)
    cumulative[:, -1] = 1.0
    offsets = np.arange(joint.shape[0], dtype=np.float64)[:, None]
    flat = (cumulative + offsets).ravel()
    targets = row_index + stratified_uniforms(row_index, rng)
    picked = np.searchsorted(flat, targets, side="right") - row_index * joint.shape[1]
    return np.asarray(np.clip(picked, 0, joint.shape[1] - 1), dtype=np.int64)


def stratified_uniforms(groups: IntArray, rng: np.random.Generator) -> FloatArray:
    """One uniform in [0, 1) per row, stratified within each group: the m rows of a group, in random order,
    get one uniform from each of [0, 1/m), [1/m, 2/m), ... (so each cell of a group's conditional receives
    its expected count up to +-1, instead of a multinomial draw; every row's value is still uniform)."""
    n = groups.shape[0]
    if n == 0:
        return np.zeros(0)
    shuffled = rng.permutation(n)
    order = shuffled[np.argsort(groups[shuffled], kind="stable")]
    ordered = groups[order]
    first = np.searchsorted(ordered, ordered, side="left")
    last = np.searchsorted(ordered, ordered, side="right")
    out = np.empty(n)
    out[order] = (np.arange(n) - first + rng.random(n)) / (last - first)
    return out
