"""Fit a graphical model to noisy marginal measurements (private-pgm style, pure numpy).

Given measurements y_i on cliques M_i with noise stddev s_i, we look for the distribution (scaled to a
total of N records) minimising the weighted least-squares loss

    L(mu) = sum_i ||mu_{M_i} - y_i||^2 / (2 s_i^2),

over the graphical models whose junction tree contains every M_i. Each measurement is attached to the
smallest junction-tree clique containing it. The model's marginals come from belief propagation, so they are
always non-negative and consistent: negative or tiny noisy counts are absorbed by the fit instead of being
clipped table by table.

Optimisation is mirror descent on the log-potentials (the entropic geometry of McKenna, Sheldon, Miklau
2019, "Graphical-model based estimation and inference for differential privacy"): theta_C moves against the
gradient of L with respect to the clique marginal mu_C, which is always a descent direction. The step
starts at 1 / sum of weights, grows by 1.25 after every successful step and is halved until the loss
decreases (backtracking); we stop after `max_iters` steps or when the relative gain falls below `tol`.
Before that, an IPF-like phase takes preconditioned steps theta_C -= step * mean_i w_i (mu_M - y_i) / mu_M
(the linearised log(y / mu) of iterative proportional fitting) while they reduce the loss: it converges
fast on consistent measurements and drives cells towards zero geometrically, but it is not a descent
direction when noisy measurements of different granularity disagree, so it stops as soon as it stalls and
plain mirror descent finishes. Both phases share the `max_iters` budget.

The start is the decomposable closed form prod_C y_C / prod_S y_S built from the (floored) measurements,
exact when the measurements are noiseless and consistent on a tree.

N is the inverse-variance weighted mean of the measured table totals (variance of a total = s^2 * cells).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement
from cleanroom.synth.junction_tree import DEFAULT_MAX_CELLS, JunctionTree, build_junction_tree
from cleanroom.synth.model import FloatArray, GraphicalModel, expand_shape, logsumexp, sum_axes

FLOOR_COUNT = 1e-3  # counts below this are treated as this in the starting point (log of 0 is -inf)


@dataclass(frozen=True)
class EstimationConfig:
    """Mirror-descent settings: at most `max_iters` steps, stop when the relative loss gain < `tol`."""

    max_iters: int = 400
    tol: float = 1e-9
    max_cells: int = DEFAULT_MAX_CELLS

    def __post_init__(self) -> None:
        if self.max_iters < 0:
            raise InvalidInput(f"EstimationConfig: max_iters ({self.max_iters}) must be >= 0")
        if not self.tol >= 0:
            raise InvalidInput(f"EstimationConfig: tol ({self.tol}) must be >= 0")
        if self.max_cells < 1:
            raise InvalidInput(f"EstimationConfig: max_cells ({self.max_cells}) must be >= 1")


@dataclass(frozen=True)
class _Attached:
    """The measurements of one sub-clique, stacked: all are attached to junction-tree clique `node`.

    Many measurements share a sub-clique (MST projects every unselected candidate pair to two 1-ways), so
    the loss projects the clique marginal once per group instead of once per measurement.
    """

    node: int
    axes: tuple[int, ...]
    shape: tuple[int, ...]
    values: FloatArray  # (k, cells of the sub-clique), one row per measurement
    weights: FloatArray  # (k,): 1 / variance of each measurement

    @property
    def weight(self) -> float:
        return float(self.weights.sum())


def estimate_total(measurements: Sequence[Measurement]) -> float:
    weights = np.array([1.0 / (m.variance * m.noisy_values.size) for m in measurements])
    totals = np.array([float(m.noisy_values.sum()) for m in measurements])
    return max(float(np.dot(weights, totals) / weights.sum()), 1.0)


def _attach(domain: Domain, tree: JunctionTree, measurements: Sequence[Measurement]) -> list[_Attached]:
    groups: dict[tuple[int, tuple[int, ...]], list[Measurement]] = {}
    shapes: dict[tuple[int, tuple[int, ...]], tuple[int, ...]] = {}
    for m in measurements:
        m.check_domain(domain)
        node = tree.containing(m.clique)
        clique = tree.cliques[node]
        key = (node, sum_axes(clique, m.clique))
        groups.setdefault(key, []).append(m)
        shapes[key] = expand_shape(domain, clique, m.clique)
    return [
        _Attached(
            node,
            axes,
            shapes[(node, axes)],
            np.stack([np.asarray(m.noisy_values, dtype=np.float64).ravel() for m in group]),
            np.array([1.0 / m.variance for m in group]),
        )  # fmt: skip
        for (node, axes), group in groups.items()
    ]


def _projected(a: _Attached, marginals: list[FloatArray]) -> FloatArray:
    """The group's sub-clique marginal of the model, flattened."""
    table = marginals[a.node].sum(axis=a.axes) if a.axes else marginals[a.node]
    return np.asarray(table, dtype=np.float64).ravel()


def _initial_theta(domain: Domain, tree: JunctionTree, attached: list[_Attached]) -> list[FloatArray]:
    theta = []
    for node, clique in enumerate(tree.cliques):
        exact = [a for a in attached if a.node == node and not a.axes]
        table = np.zeros(domain.project(clique).shape)
        if exact:
            weighted = sum(a.weights @ a.values for a in exact)
            mean = weighted / sum(a.weight for a in exact)
            table = np.log(np.maximum(mean, FLOOR_COUNT)).reshape(table.shape)
        theta.append(table)
    for node in tree.order[1:]:
        sep = tree.separator[node]
        clique = tree.cliques[node]
        if sep:
            marginal = logsumexp(theta[node], sum_axes(clique, sep))
            theta[node] = theta[node] - marginal.reshape(expand_shape(domain, clique, sep))
        else:
            theta[node] = theta[node] - logsumexp(theta[node], tuple(range(theta[node].ndim)))
    return theta


def _loss(attached: list[_Attached], marginals: list[FloatArray]) -> tuple[float, list[FloatArray]]:
    """Loss and its gradient with respect to every clique marginal (zeros where nothing is attached)."""
    loss = 0.0
    gradient = [np.zeros_like(m) for m in marginals]
    for a in attached:
        residual = _projected(a, marginals)[None, :] - a.values
        loss += 0.5 * float(a.weights @ np.einsum("ij,ij->i", residual, residual))
        gradient[a.node] += (a.weights @ residual).reshape(a.shape)
    return loss, gradient


def estimate(
    domain: Domain,
    measurements: Sequence[Measurement],
    config: EstimationConfig | None = None,
    extra_cliques: Sequence[Clique] = (),
) -> GraphicalModel:
    """Fit a `GraphicalModel` to `measurements`; `extra_cliques` widen the junction tree if wanted."""
    config = config or EstimationConfig()
    if not measurements:
        raise InvalidInput("estimate: no measurements to fit")
    tree = build_junction_tree(
        domain, [m.clique for m in measurements] + list(extra_cliques), config.max_cells
    )
    attached = _attach(domain, tree, measurements)
    total = estimate_total(measurements)
    model = GraphicalModel(domain, tree, tuple(_initial_theta(domain, tree, attached)), total)
    return _mirror_descent(model, attached, config)


def _ipf_direction(
    model: GraphicalModel, attached: list[_Attached], marginals: list[FloatArray]
) -> list[FloatArray]:
    """Per clique, the weighted mean over its measurements of -(mu_M - y) / mu_M (linearised log(y/mu_M))."""
    direction = [np.zeros_like(t) for t in model.theta]
    weight_sum = np.zeros(len(model.theta))
    for a in attached:
        projected = _projected(a, marginals)
        ratio = (projected[None, :] - a.values) / np.maximum(projected, 1e-300)[None, :]
        direction[a.node] -= (a.weights @ np.clip(ratio, -20.0, 20.0)).reshape(a.shape)
        weight_sum[a.node] += a.weight
    return [d / w if w > 0 else d for d, w in zip(direction, weight_sum, strict=True)]


def _try_step(
    model: GraphicalModel, direction: list[FloatArray], step: float, attached: list[_Attached]
) -> tuple[GraphicalModel, float, list[FloatArray], list[FloatArray]]:
    theta = tuple(t + step * d for t, d in zip(model.theta, direction, strict=True))
    candidate = GraphicalModel(model.domain, model.tree, theta, model.total)
    marginals = candidate.marginals()
    loss, gradient = _loss(attached, marginals)
    return candidate, loss, gradient, marginals


def _ipf_phase(
    model: GraphicalModel, attached: list[_Attached], config: EstimationConfig
) -> tuple[GraphicalModel, int]:
    """IPF-like steps while they keep gaining: fast on consistent measurements and near zero cells."""
    marginals = model.marginals()
    loss, _ = _loss(attached, marginals)
    step, used = 1.0, 0
    while used < config.max_iters and step > 1e-3:
        used += 1
        candidate, new_loss, _, new_marginals = _try_step(
            model, _ipf_direction(model, attached, marginals), step, attached
        )
        if new_loss < loss * (1 - config.tol):
            model, loss, marginals = candidate, new_loss, new_marginals
            step = min(1.0, step * 1.25)
        else:
            step *= 0.5
    return model, used


def _mirror_descent(
    model: GraphicalModel, attached: list[_Attached], config: EstimationConfig
) -> GraphicalModel:
    model, used = _ipf_phase(model, attached, config)
    loss, gradient = _loss(attached, model.marginals())
    # 1 / (sum of weights) is a safe step for the L1-smoothness of the loss; it grows while steps succeed
    step = 1.0 / sum(a.weight for a in attached)
    for _ in range(config.max_iters - used):
        while True:
            candidate, new_loss, new_gradient, _ = _try_step(model, [-g for g in gradient], step, attached)
            if new_loss <= loss or step < 1e-30:
                break
            step *= 0.5
        if new_loss > loss:
            break
        gain = (loss - new_loss) / max(loss, 1e-300)
        model, loss, gradient = candidate, new_loss, new_gradient
        step *= 1.25
        if gain < config.tol:
            break
    return model
