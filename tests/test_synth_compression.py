"""Domain compression from noisy 1-way counts: which levels merge or drop, projection, expansion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement
from cleanroom.synth import CompressedModel, Compression, estimate
from cleanroom.synth.compression import CellMeasurement, LevelMap, cell_variance, level_map


def test_levels_below_the_threshold_merge_and_reserved_ones_drop() -> None:
    counts = np.array([500.0, 12.0, 800.0, -3.0, 25.0, 4.0])  # stddev 10, z 3: threshold 30
    categorical = level_map(counts, 10.0, 3.0, special=(5,))
    assert categorical.groups == ((0,), (1, 3, 4), (2,))  # 5 (reserved, e.g. __missing__) dropped
    merged = categorical.weights[1]
    assert merged == pytest.approx((12 / 37, 0.0, 25 / 37))  # noisy counts clipped at zero
    ordinal = level_map(counts, 10.0, 3.0, special=(5,), ordinal=True)
    assert ordinal.groups == ((0,), (1,), (2,), (3, 4))  # only neighbouring bins merge
    kept_special = level_map(np.array([100.0, 90.0]), 10.0, 3.0, special=(1,))
    assert kept_special.groups == ((0,), (1,))  # a reserved level with a clear count stays
    nothing = level_map(np.array([-5.0, 2.0, 1.0]), 10.0, 3.0, special=(0, 1, 2))
    assert nothing.groups == ((1,),)  # at least the largest level survives


def test_level_map_validation() -> None:
    with pytest.raises(InvalidInput, match="disjoint"):
        LevelMap(3, ((0, 1), (1,)), ((0.5, 0.5), (1.0,)))
    with pytest.raises(InvalidInput, match="shares"):
        LevelMap(3, ((0, 1),), ((0.7, 0.7),))


def _compression() -> Compression:
    domain = Domain(("a", "b"), (4, 3))
    one_way = [
        Measurement(("a",), np.array([400.0, 5.0, 300.0, 10.0]), 10.0),
        Measurement(("b",), np.array([350.0, 360.0, 1.0]), 10.0),
    ]
    return Compression.from_one_ways(domain, one_way, 3.0, special={"b": (2,)})


def test_projection_sums_cells_and_their_noise() -> None:
    compression = _compression()
    assert compression.compressed.shape == (3, 2)  # a: {0}, {1, 3}, {2}; b: {0}, {1}, 2 dropped
    table = np.arange(12.0).reshape(4, 3)
    projected = compression.project(Measurement(("a", "b"), table, 2.0))
    np.testing.assert_allclose(projected.noisy_values, [[0, 1], [3 + 9, 4 + 10], [6, 7]])
    np.testing.assert_allclose(cell_variance(projected), [[4, 4], [8, 8], [4, 4]])
    assert isinstance(projected, CellMeasurement) and projected.stddev == pytest.approx(np.sqrt(8))
    twice = compression.project(Measurement(("a",), np.ones(4), 1.0))
    np.testing.assert_allclose(twice.noisy_values, [1, 2, 1])


def test_expansion_splits_merged_levels_by_their_noisy_counts_and_never_emits_dropped_ones() -> None:
    compression = _compression()
    rng = np.random.default_rng(5)
    small = rng.integers(0, 2, size=(20000, 2))  # compressed codes: a in {0, 1}, b in {0, 1}
    codes = compression.expand(small, rng)
    assert set(np.unique(codes[:, 1])) == {0, 1}  # the dropped level 2 of b never appears
    merged = codes[small[:, 0] == 1, 0]
    observed = [int((merged == 1).sum()), int((merged == 3).sum())]
    assert sum(observed) == merged.size
    chi2 = stats.chisquare(observed, np.array([5.0, 10.0]) / 15 * merged.size)
    assert chi2.pvalue > 1e-3


def test_compressed_model_marginals_and_samples_agree() -> None:
    compression = _compression()
    rng = np.random.default_rng(6)
    table = np.array([[300.0, 100.0], [10.0, 5.0], [50.0, 250.0]])
    model = CompressedModel(
        estimate(compression.compressed, [Measurement(("a", "b"), table, 1.0)]), compression
    )
    marginal = model.marginal(("a", "b"))
    assert marginal.shape == (4, 3) and marginal.sum() == pytest.approx(table.sum(), rel=1e-3)
    np.testing.assert_allclose(marginal[:, 2], 0.0)  # dropped level
    np.testing.assert_allclose(marginal[1] + marginal[3], table[1].tolist() + [0.0], rtol=1e-2)
    codes = model.sample(40000, rng)
    frequencies = np.zeros((4, 3))
    np.add.at(frequencies, (codes[:, 0], codes[:, 1]), 1.0)
    expected = marginal / marginal.sum() * len(codes)
    keep = expected > 0
    chi2 = stats.chisquare(frequencies[keep], expected[keep])
    assert chi2.pvalue > 1e-3
    with pytest.raises(InvalidInput, match="compressed domain"):
        CompressedModel(estimate(Domain(("a", "b"), (4, 3)), [Measurement(("a", "b"), np.ones((4, 3)), 1.0)]),
                        compression)  # fmt: skip
