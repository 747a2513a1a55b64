"""Utility statistics: additivity across parties, binned AUC vs exact AUC, metrics vs scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from cleanroom.errors import InvalidInput
from cleanroom.evaluation.utility import (
    CLASSIFICATION_SENSITIVITY_L2,
    TargetBounds,
    auc_from_histograms,
    classification_metrics,
    classification_metrics_from_vector,
    classification_statistics,
    classification_vector_length,
    regression_metrics,
    regression_metrics_from_vector,
    regression_sensitivity_l2,
    regression_statistics,
)


def scored_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    logits = rng.normal(size=n) + 1.5 * labels
    return labels, 1.0 / (1.0 + np.exp(-logits))


def party_slices(n: int, parties: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    assignment = rng.integers(0, parties, size=n)
    return [np.flatnonzero(assignment == p) for p in range(parties)]


def test_classification_vectors_add_up_across_parties() -> None:
    labels, scores = scored_labels(3000, seed=1)
    pooled = classification_statistics(labels, scores, n_bins=100)
    parts = [
        classification_statistics(labels[idx], scores[idx], n_bins=100) for idx in party_slices(3000, 3, 2)
    ]
    assert pooled.dtype == np.int64 and pooled.size == classification_vector_length(100)
    np.testing.assert_array_equal(np.sum(parts, axis=0), pooled)


def test_binned_auc_matches_sklearn_within_binning_error() -> None:
    labels, scores = scored_labels(5000, seed=3)
    vector = classification_statistics(labels, scores, n_bins=1000)
    neg, pos = vector[:1000].astype(float), vector[1000:2000].astype(float)
    # Only pairs sharing a bin can be misordered, and each such pair is off by exactly one half.
    bound = 0.5 * float(np.dot(neg, pos)) / (neg.sum() * pos.sum())
    metrics = classification_metrics_from_vector(vector, n_bins=1000)
    assert metrics.auc_binning_bound == pytest.approx(bound)
    assert abs(metrics.auc - roc_auc_score(labels, scores)) <= bound + 1e-12
    assert bound < 0.005


def test_auc_from_histograms_known_values() -> None:
    assert auc_from_histograms([3, 0], [0, 2]) == 1.0
    assert auc_from_histograms([0, 3], [2, 0]) == 0.0
    assert auc_from_histograms([4, 0], [4, 0]) == 0.5
    assert auc_from_histograms([1, 1], [0, 1]) == 0.75
    assert math.isnan(auc_from_histograms([0, 0], [1, 1]))


def test_accuracy_f1_match_sklearn() -> None:
    labels, scores = scored_labels(2000, seed=4)
    metrics = classification_metrics(labels, scores, n_bins=100)
    predicted = scores > 0.5
    assert metrics.accuracy == pytest.approx(accuracy_score(labels, predicted))
    assert metrics.f1 == pytest.approx(f1_score(labels, predicted))
    assert metrics.n == 2000


def test_noisy_vector_with_negative_counts_gives_valid_metrics() -> None:
    labels, scores = scored_labels(5000, seed=5)
    vector = classification_statistics(labels, scores, n_bins=100)
    noise = np.random.default_rng(6).normal(0, 3, size=vector.size).round().astype(np.int64)
    noisy = vector + noise
    assert (noisy < 0).any()
    metrics = classification_metrics_from_vector(noisy, n_bins=100)
    for value in (metrics.accuracy, metrics.f1, metrics.auc):
        assert 0.0 <= value <= 1.0
    # Cumulative noise over <= 100 cells of sd 3 against ~1500 x 3500 pairs: well under 0.02.
    assert abs(metrics.auc - roc_auc_score(labels, scores)) < 0.02


def test_one_record_moves_classification_vector_by_stated_sensitivity() -> None:
    labels, scores = scored_labels(50, seed=7)
    with_record = classification_statistics(labels, scores, n_bins=10)
    without = classification_statistics(labels[1:], scores[1:], n_bins=10)
    assert np.linalg.norm(with_record - without) == pytest.approx(CLASSIFICATION_SENSITIVITY_L2)


def regression_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.uniform(10, 90, size=n)
    return y, y + rng.normal(0, 8, size=n)


def test_regression_vectors_add_up_and_match_sklearn() -> None:
    y, predicted = regression_data(4000, seed=8)
    bounds = TargetBounds(0.0, 100.0)
    pooled = regression_statistics(y, predicted, bounds)
    parts = [regression_statistics(y[i], predicted[i], bounds) for i in party_slices(4000, 3, 9)]
    np.testing.assert_array_equal(np.sum(parts, axis=0), pooled)
    metrics = regression_metrics_from_vector(pooled, bounds)
    clipped = np.clip(predicted, 0, 100)
    assert metrics.rmse == pytest.approx(math.sqrt(mean_squared_error(y, clipped)), rel=1e-4)
    assert metrics.mae == pytest.approx(mean_absolute_error(y, clipped), rel=1e-4)
    assert metrics.r2 == pytest.approx(r2_score(y, clipped), abs=1e-4)


def test_regression_record_contribution_within_sensitivity() -> None:
    bounds = TargetBounds(-5.0, 5.0)
    worst = regression_statistics([5.0], [-5.0], bounds, scale=1000)
    assert np.linalg.norm(worst) <= regression_sensitivity_l2(1000) + 1e-9
    assert worst.max() == 1000 and worst.min() >= 0


def test_regression_noisy_or_empty_vector() -> None:
    bounds = TargetBounds(0.0, 1.0)
    assert math.isnan(regression_metrics_from_vector([-3, 0, 0, 0, 0], bounds).rmse)
    direct = regression_metrics([0.2, 0.4, 0.9], [0.2, 0.5, 0.7], bounds)
    assert direct.mae == pytest.approx(0.1, abs=1e-4)


def test_statistics_are_total_functions_of_scores_and_targets() -> None:
    """NaN or infinite scores/predictions/targets never raise and never move another record's cell."""
    labels = np.array([True, False, True, False, True])
    scores = np.array([np.nan, 0.2, np.inf, -np.inf, 0.5])
    vector = classification_statistics(labels, scores, n_bins=10)
    assert vector.sum() == 2 * 5  # every record lands in one histogram and one confusion cell
    assert vector[15] == 3 and vector[2] == 1 and vector[5] == 1  # NaN and +-inf read as 0.5: bin 5
    assert classification_statistics([], [], n_bins=10).sum() == 0
    bounds = TargetBounds(0.0, 10.0)
    truth = np.array([1.0, np.nan, np.inf, 5.0, -1e300])
    predicted = np.array([np.nan, 3.0, 1e300, -np.inf, 2.0])
    totals = regression_statistics(truth, predicted, bounds, scale=2**16)
    assert totals[0] == 4 * 2**16  # the record without a target contributes nothing
    for row in range(5):  # each record's contribution is bounded and its own
        alone = regression_statistics(truth[row : row + 1], predicted[row : row + 1], bounds, scale=2**16)
        assert ((alone >= 0) & (alone <= 2**16)).all()
    assert regression_statistics([], [], bounds).tolist() == [0] * 5


def test_regression_rounds_each_record() -> None:
    """round(sum) would differ: three records of y' = 1/3 give round(S/3) each, not round(S)."""
    bounds = TargetBounds(0.0, 3.0)
    one = regression_statistics([1.0], [1.0], bounds, scale=2)
    three = regression_statistics([1.0] * 3, [1.0] * 3, bounds, scale=2)
    np.testing.assert_array_equal(three, 3 * one)


def test_invalid_inputs_are_named() -> None:
    with pytest.raises(InvalidInput, match="n_bins"):
        classification_statistics([0, 1], [0.1, 0.9], n_bins=1)
    with pytest.raises(InvalidInput, match="differ in length"):
        classification_statistics([0, 1, 1], [0.1, 0.9], n_bins=10)
    with pytest.raises(InvalidInput, match="0/1"):
        classification_statistics([0, 2], [0.1, 0.9], n_bins=10)
    with pytest.raises(InvalidInput, match="lower < upper"):
        TargetBounds(1.0, 1.0)
    with pytest.raises(InvalidInput, match="length"):
        classification_metrics_from_vector(np.zeros(5), n_bins=10)


def test_combined_tstr_auc_matches_pooled_direct_auc_within_noise_and_binning() -> None:
    """A model trained on 'synthetic' rows, scored by 3 parties; summed noisy vectors vs the pooled AUC."""
    from sklearn.linear_model import LogisticRegression

    from cleanroom.evaluation.utility import positive_scores

    rng = np.random.default_rng(10)
    weights = np.array([1.0, -0.7, 0.4])

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 3))
        return x, np.where(rng.random(n) < 1 / (1 + np.exp(-x @ weights)), ">50K", "<=50K")

    model = LogisticRegression().fit(*rows(2000))
    real_x, real_y = rows(6000)
    scores = positive_scores(model, real_x, ">50K")
    labels = real_y == ">50K"
    vectors = [classification_statistics(labels[i], scores[i]) for i in party_slices(6000, 3, 11)]
    sigma = 2.0  # per-cell standard deviation of the summed noise
    noisy = np.sum(vectors, axis=0) + rng.normal(0, sigma, vectors[0].size).round().astype(np.int64)
    combined = classification_metrics_from_vector(noisy)
    direct = roc_auc_score(labels, scores)
    # Noise in the AUC numerator: sum_i pos_i * (noise of negatives below i) has sd <= P * sigma * sqrt(B),
    # plus the positives' noise times at most N; 4 standard deviations of that, relative to P * N.
    n_pos, n_neg = labels.sum(), (~labels).sum()
    noise_bound = 4 * sigma * math.sqrt(100) * (n_pos + n_neg) / (n_pos * n_neg)
    assert abs(combined.auc - direct) <= combined.auc_binning_bound + noise_bound
    assert noise_bound + combined.auc_binning_bound < 0.06  # small enough to mean something
    assert combined.accuracy == pytest.approx(accuracy_score(real_y, model.predict(real_x)), abs=0.01)
    with pytest.raises(InvalidInput, match="positive class"):
        positive_scores(model, real_x, "yes")
