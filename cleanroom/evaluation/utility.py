"""Utility of a model on real rows that never leave their party, via additive sufficient statistics.

After training (on synthetic data) the coordinator sends the model to every party; each party scores its own
real rows and returns only an int64 statistics vector. Vectors add up across parties (sum of the parties'
vectors == vector of the pooled rows), so they are noised and summed by secure aggregation like the marginals,
and the coordinator turns the summed, noisy vector into metrics.

Classification (binary, positive class chosen by the caller), vector of length ``2 * n_bins + 4``::

    [negatives' score histogram (n_bins) | positives' score histogram (n_bins) | tn, fp, fn, tp]

Scores are the model's positive-class probabilities, clipped to [0, 1] and binned into ``n_bins`` equal bins
(bin i = [i/B, (i+1)/B), the last bin closed; default B = 100: finer bins shrink the binning error but
add noise to the cumulative counts). The confusion counts use "positive iff score > threshold"
(scikit-learn's ``predict`` for binary models at threshold 0.5). One record adds 1 to one histogram cell and 1
to one confusion cell: L1 = 2, **L2 = sqrt(2)** per added/removed record (`CLASSIFICATION_SENSITIVITY_L2`).

Regression, vector of length 5, in fixed point with ``scale`` S (default 2**16) on the target's *public*
bounds [lower, upper]: with y' = (clip(y) - lower) / (upper - lower) and r' = y'_pred - y' (the prediction is
clipped to the same bounds; a non-finite one counts as the lower bound, `finite_predictions`), each record
with a known target contributes ``round(S * [1, y', y'^2, r'^2, |r'|])``, rounded per record, every
component in [0, S]. Hence **L2 = sqrt(5) * S** per record (`regression_sensitivity_l2`); noise calibrated to
it has the same relative effect on every component.

Both statistics are total functions of the rows: a non-finite score is read as 0.5 (`total_scores`, as
`positive_scores` does), scores are clipped to [0, 1], and no value or number of rows makes them raise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cleanroom.errors import InvalidInput

DEFAULT_SCORE_BINS = 100
DEFAULT_REGRESSION_SCALE = 2**16
CLASSIFICATION_SENSITIVITY_L2 = math.sqrt(2.0)
REGRESSION_VECTOR_LENGTH = 5
NON_FINITE_SCORE = 0.5  # the score of a record whose model probability is NaN or infinite

IntVector = NDArray[np.int64]
FloatVector = NDArray[np.float64]


class ProbabilisticClassifier(Protocol):
    """What `positive_scores` needs from a fitted scikit-learn classifier."""

    @property
    def classes_(self) -> Any: ...

    def predict_proba(self, x: Any) -> Any: ...


def check_n_bins(n_bins: int) -> None:
    if not isinstance(n_bins, int) or n_bins < 2:
        raise InvalidInput(f"n_bins ({n_bins!r}) must be an integer >= 2")


def total_scores(scores: ArrayLike) -> FloatVector:
    """Scores as floats in [0, 1]: clipped; a non-finite one is `NON_FINITE_SCORE`, as in `positive_scores`.

    Each record's value depends on its own score only, so a model answering NaN for some rows neither stops
    the statistic nor moves any other record's cell.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    return np.clip(np.where(np.isfinite(values), values, NON_FINITE_SCORE), 0.0, 1.0)


def score_bins(scores: ArrayLike, n_bins: int) -> IntVector:
    """Bin index of each score (`total_scores`: clipped to [0, 1], non-finite as 0.5) among `n_bins` bins."""
    check_n_bins(n_bins)
    index = np.floor(total_scores(scores) * n_bins).astype(np.int64)
    return np.minimum(index, n_bins - 1)


def score_histogram(scores: ArrayLike, n_bins: int) -> IntVector:
    """int64 histogram of scores over `n_bins` equal bins on [0, 1]."""
    return np.bincount(score_bins(scores, n_bins), minlength=n_bins).astype(np.int64)


def auc_from_histograms(negative: ArrayLike, positive: ArrayLike) -> float:
    """Exact area under the ROC curve of binned scores (ties within a bin count one half).

    Equals the Mann-Whitney probability that a positive's bin is above a negative's bin, plus half the
    probability that they share a bin. Noisy cells are used as they are (not clipped: the AUC's numerator
    and denominator are bilinear in the counts, so zero-mean noise stays nearly unbiased, while clipping
    every cell at zero would add spurious mass and pull the AUC towards 0.5); the result is clipped to
    [0, 1]. NaN when a class's total is not positive.
    """
    neg = np.asarray(negative, dtype=np.float64).ravel()
    pos = np.asarray(positive, dtype=np.float64).ravel()
    if neg.shape != pos.shape or np.asarray(negative).ndim != 1:
        raise InvalidInput(f"histograms must be 1-d of equal length, got {neg.shape} and {pos.shape}")
    n_neg, n_pos = float(neg.sum()), float(pos.sum())
    if n_neg <= 0.0 or n_pos <= 0.0:
        return math.nan
    negatives_below = np.cumsum(neg) - neg
    wins = float(np.dot(pos, negatives_below + 0.5 * neg))
    return min(max(wins / (n_neg * n_pos), 0.0), 1.0)


def auc_binning_error_bound(negative: ArrayLike, positive: ArrayLike) -> float:
    """Largest possible |binned AUC - unbinned AUC|: half the share of (pos, neg) pairs sharing a bin."""
    neg = np.clip(np.asarray(negative, dtype=np.float64).ravel(), 0.0, None)
    pos = np.clip(np.asarray(positive, dtype=np.float64).ravel(), 0.0, None)
    total = float(neg.sum()) * float(pos.sum())
    return 0.5 * float(np.dot(neg, pos)) / total if total > 0.0 else math.nan


def _labels(y_true: ArrayLike) -> NDArray[np.bool_]:
    labels = np.asarray(y_true).ravel()
    if labels.dtype != np.bool_:
        if not np.isin(labels, (0, 1)).all():
            raise InvalidInput("y_true must be booleans or 0/1 (1 = the positive class)")
        labels = labels.astype(np.bool_)
    return labels


def classification_statistics(
    y_true: ArrayLike, scores: ArrayLike, n_bins: int = DEFAULT_SCORE_BINS, threshold: float = 0.5
) -> IntVector:
    """The additive classification vector (layout in the module docstring) of one party's rows."""
    labels = _labels(y_true)
    values = total_scores(scores)
    if labels.shape != values.shape:
        raise InvalidInput(f"y_true ({labels.size} rows) and scores ({values.size} rows) differ in length")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInput(f"threshold ({threshold}) must be in [0, 1]")
    negative_hist = score_histogram(values[~labels], n_bins)
    positive_hist = score_histogram(values[labels], n_bins)
    predicted = values > threshold
    tn = int(np.sum(~labels & ~predicted))
    fp = int(np.sum(~labels & predicted))
    fn = int(np.sum(labels & ~predicted))
    tp = int(np.sum(labels & predicted))
    confusion = np.array([tn, fp, fn, tp], dtype=np.int64)
    return np.concatenate([negative_hist, positive_hist, confusion]).astype(np.int64)


def classification_vector_length(n_bins: int = DEFAULT_SCORE_BINS) -> int:
    check_n_bins(n_bins)
    return 2 * n_bins + 4


@dataclass(frozen=True)
class ClassificationMetrics:
    """Binary classification metrics; `n` is the (noisy) number of rows they were computed on.

    `auc_binning_bound` is the largest possible difference between `auc` and the unbinned AUC.
    """

    n: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    auc: float
    auc_binning_bound: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0.0 else math.nan


def classification_metrics_from_vector(
    vector: ArrayLike, n_bins: int = DEFAULT_SCORE_BINS
) -> ClassificationMetrics:
    """Metrics from a (summed, possibly noisy) classification vector; negative noisy counts are clipped."""
    values = np.asarray(vector, dtype=np.float64).ravel()
    expected = classification_vector_length(n_bins)
    if values.size != expected:
        raise InvalidInput(f"classification vector has length {values.size}, expected {expected}")
    auc = auc_from_histograms(values[:n_bins], values[n_bins : 2 * n_bins])
    auc_bound = auc_binning_error_bound(values[:n_bins], values[n_bins : 2 * n_bins])
    tn, fp, fn, tp = (max(float(v), 0.0) for v in values[2 * n_bins :])
    total = tn + fp + fn + tp
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2.0 * tp, 2.0 * tp + fp + fn)
    return ClassificationMetrics(total, _ratio(tp + tn, total), precision, recall, f1, auc, auc_bound)


def classification_metrics(
    y_true: ArrayLike, scores: ArrayLike, n_bins: int = DEFAULT_SCORE_BINS, threshold: float = 0.5
) -> ClassificationMetrics:
    """Metrics computed directly (no noise), with the same binning as the combined figures."""
    return classification_metrics_from_vector(
        classification_statistics(y_true, scores, n_bins, threshold), n_bins
    )


def positive_scores(model: ProbabilisticClassifier, x: Any, positive_class: object) -> FloatVector:
    """The model's probability of `positive_class` for each row of `x`; a non-finite probability (NaN, inf)
    counts as `NON_FINITE_SCORE` for its record, so a bad model never makes a round fail on one row."""
    classes = list(np.asarray(model.classes_).tolist())
    if positive_class not in classes:
        raise InvalidInput(f"positive class {positive_class!r} is not among the model's classes {classes}")
    proba = np.asarray(model.predict_proba(x), dtype=np.float64)
    scores = proba[:, classes.index(positive_class)]
    return np.where(np.isfinite(scores), scores, NON_FINITE_SCORE)


def finite_predictions(predictions: ArrayLike, bounds: TargetBounds) -> FloatVector:
    """Regression predictions with each non-finite value (NaN, inf) replaced by the target's lower bound."""
    values = np.asarray(predictions, dtype=np.float64).ravel()
    return np.where(np.isfinite(values), values, bounds.lower)


@dataclass(frozen=True)
class TargetBounds:
    """Public bounds of a regression target; values and predictions are clipped to them."""

    lower: float
    upper: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)) or self.upper <= self.lower:
            raise InvalidInput(
                f"target bounds [{self.lower}, {self.upper}] must be finite with lower < upper"
            )

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def clip_scaled(self, values: ArrayLike) -> FloatVector:
        """Values clipped to the bounds and scaled to [0, 1] (+-inf to the bounds; NaN stays NaN)."""
        array = np.asarray(values, dtype=np.float64).ravel()
        return np.asarray((np.clip(array, self.lower, self.upper) - self.lower) / self.width)


def regression_sensitivity_l2(scale: int = DEFAULT_REGRESSION_SCALE) -> float:
    """Per-record L2 sensitivity of `regression_statistics` (every one of 5 components lies in [0, scale])."""
    return math.sqrt(REGRESSION_VECTOR_LENGTH) * scale


def regression_statistics(
    y_true: ArrayLike, y_pred: ArrayLike, bounds: TargetBounds, scale: int = DEFAULT_REGRESSION_SCALE
) -> IntVector:
    """The additive regression vector ``sum_records round(scale * [1, y', y'^2, r'^2, |r'|])``."""
    if not isinstance(scale, int) or scale < 1:
        raise InvalidInput(f"scale ({scale!r}) must be a positive integer")
    truth = np.asarray(y_true, dtype=np.float64).ravel()
    predicted = np.asarray(y_pred, dtype=np.float64).ravel()
    if truth.shape != predicted.shape:
        raise InvalidInput(f"y_true ({truth.size} rows) and y_pred ({predicted.size} rows) differ in length")
    known = ~np.isnan(truth)  # a record without a target contributes nothing
    truth = bounds.clip_scaled(truth[known])
    predicted = bounds.clip_scaled(finite_predictions(predicted[known], bounds))
    residual = predicted - truth
    per_record = np.stack([np.ones_like(truth), truth, truth**2, residual**2, np.abs(residual)], axis=1)
    rounded = np.rint(per_record * scale).astype(np.int64)  # per record: each component in [0, scale]
    totals: IntVector = rounded.sum(axis=0, dtype=np.int64).reshape(REGRESSION_VECTOR_LENGTH)
    return totals


@dataclass(frozen=True)
class RegressionMetrics:
    """Regression metrics in the target's units; `n` is the (noisy) number of rows."""

    n: float
    rmse: float
    mae: float
    r2: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def regression_metrics_from_vector(
    vector: ArrayLike, bounds: TargetBounds, scale: int = DEFAULT_REGRESSION_SCALE
) -> RegressionMetrics:
    """RMSE, MAE and R^2 from a (summed, possibly noisy) regression vector; NaN when too noisy to say."""
    values = np.asarray(vector, dtype=np.float64).ravel() / scale
    if values.size != REGRESSION_VECTOR_LENGTH:
        raise InvalidInput(f"regression vector has length {values.size}, expected {REGRESSION_VECTOR_LENGTH}")
    n, sum_y, sum_y2, sse, sae = (float(v) for v in values)
    if n <= 0.0:
        return RegressionMetrics(n, math.nan, math.nan, math.nan)
    sse, sae = max(sse, 0.0), max(sae, 0.0)
    total_sum_squares = sum_y2 - sum_y * sum_y / n
    r2 = 1.0 - sse / total_sum_squares if total_sum_squares > 0.0 else math.nan
    return RegressionMetrics(n, math.sqrt(sse / n) * bounds.width, sae / n * bounds.width, r2)


def regression_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, bounds: TargetBounds, scale: int = DEFAULT_REGRESSION_SCALE
) -> RegressionMetrics:
    """Metrics computed directly (no noise), through the same fixed-point path as the combined figures."""
    return regression_metrics_from_vector(regression_statistics(y_true, y_pred, bounds, scale), bounds, scale)
