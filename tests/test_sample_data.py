"""The built-in demo data: determinism, fit to its schema, learnable target, party splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from cleanroom.encoding import encode
from cleanroom.errors import InvalidInput
from cleanroom.sample_data import TARGET, generate, sample_schema, split_parties


def test_deterministic_for_a_seed() -> None:
    pd.testing.assert_frame_equal(generate(500, seed=3), generate(500, seed=3))
    assert not generate(500, seed=3).equals(generate(500, seed=4))


def test_schema_fits_generated_data_without_adjustment() -> None:
    schema = sample_schema()
    frame = generate(20_000, seed=5)
    assert list(frame.columns) == list(schema.names)
    report = encode(schema, frame, source="generated").report
    assert report.adjusted == 0
    assert report.column("avg_fare").missing == int((frame["flights_per_year"] == 0).sum()) > 0
    assert frame["customer_id"].is_unique


def test_columns_are_correlated() -> None:
    frame = generate(20_000, seed=6)
    assert frame["flights_per_year"].corr(frame["hotel_nights"]) > 0.2
    gold = frame["loyalty_tier"].isin(["gold", "platinum"])
    upgrade = frame[TARGET] == "yes"
    assert upgrade[gold].mean() > upgrade[~gold].mean() + 0.15


def test_target_is_learnable() -> None:
    schema = sample_schema()
    train, test = generate(20_000, seed=7), generate(5_000, seed=8)
    features = [a for a in schema.domain.attrs if a != TARGET]

    def design(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        codes = encode(schema, frame).codes
        return codes[:, [schema.domain.index(a) for a in features]], (frame[TARGET] == "yes").to_numpy()

    x_train, y_train = design(train)
    x_test, y_test = design(test)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert 0.7 < auc < 0.95


def test_split_parties_partitions_rows() -> None:
    frame = generate(4000, seed=9)
    parts = split_parties(frame, 4, seed=1)
    assert sum(len(p) for p in parts) == len(frame)
    ids = pd.concat([p["customer_id"] for p in parts])
    assert sorted(ids) == sorted(frame["customer_id"])
    assert all(800 < len(p) < 1200 for p in parts)
    again = split_parties(frame, 4, seed=1)
    assert all(a.equals(b) for a, b in zip(parts, again, strict=True))


def test_skewed_split_is_heterogeneous() -> None:
    frame = generate(6000, seed=10)
    parts = split_parties(frame, 2, seed=2, skew=0.8)
    europe_share = [float((p["region"] == "europe").mean()) for p in parts]
    # regions are dealt round-robin: europe (index 1) is at home with party 1
    assert europe_share[1] > 2 * europe_share[0]
    pure = split_parties(frame, 5, seed=2, skew=1.0)
    assert all(p["region"].nunique() == 1 for p in pure)


@pytest.mark.parametrize(("n_parties", "skew"), [(0, 0.0), (2, 1.5)])
def test_split_parameters_validated(n_parties: int, skew: float) -> None:
    with pytest.raises(InvalidInput):
        split_parties(generate(10, seed=0), n_parties, seed=0, skew=skew)
