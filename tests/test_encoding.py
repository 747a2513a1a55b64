"""Encoding data to codes and decoding codes to synthetic values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from cleanroom.encoding import decode, encode
from cleanroom.errors import DataError, SchemaError
from cleanroom.schema import Schema
from tests.schema_paths import ADULT_DIR


def make_schema(policy: dict[str, str] | None = None, **overrides: dict[str, str]) -> Schema:
    columns: list[dict[str, Any]] = [
        {"name": "id", "type": "identifier"},
        {
            "name": "age",
            "type": "numerical",
            "lower": 0,
            "upper": 100,
            "bins": [0, 18, 65, 100],
            "integer": True,
        },
        {"name": "score", "type": "numerical", "lower": 0, "upper": 1, "n_bins": 4},
        {"name": "color", "type": "categorical", "categories": ["red", "green", "13"]},
    ]
    for column in columns:
        if column["name"] in overrides:
            column["policy"] = overrides[column["name"]]
    return Schema.from_dict({"columns": columns, "policy": policy or {}})


def test_codes_for_known_values() -> None:
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "age": [0, 18, 64, 100],
            "score": [0.0, 0.25, 0.9, 1.0],
            "color": ["red", "green", 13, "13"],
        }
    )
    encoded = encode(make_schema(), df, source="t.csv")
    assert encoded.codes.tolist() == [[0, 0, 0], [1, 1, 1], [1, 3, 2], [2, 3, 2]]
    assert encoded.report.rows == 4 and encoded.report.adjusted == 0


def test_float_integers_match_string_categories() -> None:
    df = pd.DataFrame({"id": [1, 2], "age": [1, 2], "score": [0.1, 0.1], "color": [13.0, np.nan]})
    encoded = encode(make_schema(), df)
    assert encoded.codes[:, 2].tolist() == [2, 3]


def test_missing_values_become_missing_level_and_are_counted() -> None:
    df = pd.DataFrame(
        {
            "id": list("abcde"),
            "age": [np.nan, 5, None, 7, 8],
            "score": ["", " ", "0.3", None, "1"],
            "color": [None, "", "red", np.nan, "green"],
        }
    )
    encoded = encode(make_schema(), df)
    schema = make_schema()
    assert encoded.codes[:, 0].tolist() == [3, 0, 3, 0, 0]
    assert encoded.codes[:, 1].tolist() == [4, 4, 1, 4, 3]
    assert encoded.codes[:, 2].tolist() == [3, 3, 0, 3, 1]
    assert [encoded.report.column(c.name).missing for c in schema.measured_columns] == [2, 3, 3]


def test_out_of_range_policies() -> None:
    df = pd.DataFrame(
        {"id": ["a", "b", "c"], "age": [-5, 50, 150], "score": [0.5, -1.0, 2.0], "color": ["red"] * 3}
    )
    clipped = encode(make_schema(), df)
    assert clipped.codes[:, 0].tolist() == [0, 1, 2]
    assert clipped.codes[:, 1].tolist() == [2, 0, 3]
    assert clipped.report.column("age").clipped == 2 and clipped.report.column("score").clipped == 2
    to_missing = encode(make_schema({"out_of_range": "missing"}), df)
    assert to_missing.codes[:, 0].tolist() == [3, 1, 3]
    assert to_missing.report.column("age").missing_mapped == 2
    assert to_missing.report.column("age").clipped == 0
    with pytest.raises(DataError, match=r"src: column 'age', row 0: outside \[0, 100\]: -5 "):
        encode(make_schema(age={"out_of_range": "reject"}), df, source="src")


def test_unknown_category_policies() -> None:
    df = pd.DataFrame(
        {"id": ["a", "b", "c"], "age": [1, 2, 3], "score": [0.1] * 3, "color": ["red", "blue", "pink"]}
    )
    with pytest.raises(DataError, match=r"shop\.csv: column 'color', row 1: unknown category 'blue'"):
        encode(make_schema(), df, source="shop.csv")
    other = encode(make_schema({"unknown_category": "other"}), df)
    assert other.codes[:, 2].tolist() == [0, 3, 3]
    assert other.report.column("color").other == 2
    missing = encode(make_schema(color={"unknown_category": "missing"}), df)
    assert missing.codes[:, 2].tolist() == [0, 3, 3]
    assert missing.report.column("color").missing_mapped == 2
    assert len(missing.codes) == len(df)


def test_missing_reject() -> None:
    df = pd.DataFrame({"id": ["a", "b"], "age": [1, 2], "score": [0.1, None], "color": ["red"] * 2})
    with pytest.raises(DataError, match=r"p1: column 'score', row 1: missing value"):
        encode(make_schema({"missing": "reject"}), df, source="p1")
    assert make_schema({"missing": "reject"}).domain.shape == (3, 4, 3)


def test_structural_errors() -> None:
    df = pd.DataFrame({"id": ["a"], "age": [1], "color": ["red"]})
    with pytest.raises(SchemaError, match=r"db\.table: column 'score' of the schema is missing"):
        encode(make_schema(), df, source="db.table")
    bad = pd.DataFrame(
        {"id": ["a", "b", "c"], "age": [1, 2, "twelve"], "score": [0.1] * 3, "color": ["red"] * 3}
    )
    with pytest.raises(DataError, match=r"x\.csv: column 'age', row 2: cannot cast to a number: 'twelve'"):
        encode(make_schema(), bad, source="x.csv")


def test_identifier_columns_are_not_required() -> None:
    df = pd.DataFrame({"age": [1], "score": [0.5], "color": ["red"]})
    assert encode(make_schema(), df).codes.shape == (1, 3)


def random_codes(schema: Schema, n_rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, n_rows) for size in schema.domain.shape], axis=1)


@pytest.mark.parametrize("policy", [{}, {"unknown_category": "other"}, {"missing": "reject"}])
def test_decode_round_trip(policy: dict[str, str]) -> None:
    schema = make_schema(policy)
    codes = random_codes(schema, 5000, seed=3)
    frame = decode(schema, codes, np.random.default_rng(4))
    assert list(frame.columns) == list(schema.names)
    assert np.array_equal(encode(schema, frame, source="decoded").codes, codes)
    assert frame["id"].nunique() == len(frame)


def test_decoded_values_and_dtypes() -> None:
    schema = make_schema({"unknown_category": "other"})
    codes = random_codes(schema, 4000, seed=5)
    frame = decode(schema, codes, np.random.default_rng(6))
    age, score = frame["age"], frame["score"]
    assert str(age.dtype) == "Int64" and score.dtype == np.float64 and frame["color"].dtype == object
    assert set(frame["color"].dropna()) == {"red", "green", "13", "__other__"}
    assert age.isna().sum() == (codes[:, 0] == 3).sum()
    assert age.min() == 0 and age.max() == 100  # closed last edge is reachable
    assert score.min() >= 0 and score.max() <= 1
    no_missing = codes[codes[:, 0] != 3]
    assert decode(schema, no_missing, np.random.default_rng(0))["age"].dtype == np.int64


def test_decoded_values_uniform_inside_bin() -> None:
    schema = make_schema()
    codes = np.zeros((6000, 3), dtype=np.int64)  # age bin [0, 18): integers 0..17
    frame = decode(schema, codes, np.random.default_rng(7))
    counts = np.bincount(frame["age"].to_numpy(dtype=np.int64), minlength=18)
    assert counts.size == 18
    expected = len(codes) / 18
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.0  # 17 degrees of freedom, p ~ 3e-4
    score = frame["score"].to_numpy()
    assert score.min() >= 0 and score.max() < 0.25


@pytest.mark.skipif(not (ADULT_DIR / "train.csv").exists(), reason="shared adult data not available")
def test_adult_encodes_cleanly() -> None:
    schema = Schema.load(ADULT_DIR / "schema.json")
    df = pd.read_csv(ADULT_DIR / "holdout.csv")
    encoded = encode(schema, df, source="holdout.csv")
    assert encoded.codes.shape == (len(df), 15)
    assert encoded.report.adjusted == 0
    assert int((encoded.codes[:, schema.domain.index("income")] == 1).sum()) == int(
        (df["income"] == ">50K").sum()
    )
    decoded = decode(schema, encoded.codes, np.random.default_rng(0))
    assert np.array_equal(encode(schema, decoded).codes, encoded.codes)


def test_mixed_object_and_nullable_inputs() -> None:
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "age": pd.array([3, None, 70, 20], dtype="Int64"),
            "score": pd.Series(["0.1", "", None, 1], dtype=object),
            "color": pd.Series([13, "13", 13.0, "red"], dtype=object),
        }
    )
    encoded = encode(make_schema(), df)
    assert encoded.codes.tolist() == [[0, 0, 2], [3, 4, 2], [2, 4, 2], [1, 3, 0]]
    assert encoded.report.column("score").missing == 2


def test_string_dtype_column_with_missing() -> None:
    df = pd.DataFrame(
        {"age": [1, 2, 3], "score": [0.1] * 3, "color": pd.array(["red", pd.NA, "green"], "string")}
    )
    assert encode(make_schema(), df).codes[:, 2].tolist() == [0, 3, 1]


def test_booleans_are_not_numbers() -> None:
    df = pd.DataFrame({"age": [True, False], "score": [0.1] * 2, "color": ["red"] * 2})
    with pytest.raises(DataError, match="column 'age', row 0: cannot cast to a number: True"):
        encode(make_schema(), df)


def test_wide_categorical_uses_wider_codes() -> None:
    categories = [f"c{i}" for i in range(300)]
    schema = Schema.from_dict({"columns": [{"name": "c", "type": "categorical", "categories": categories}]})
    encoded = encode(schema, pd.DataFrame({"c": ["c299", "c0", None]}))
    assert encoded.codes.dtype == np.uint16
    assert encoded.codes[:, 0].tolist() == [299, 0, 300]


def test_decode_rejects_codes_outside_the_domain() -> None:
    schema = make_schema()
    with pytest.raises(ValueError, match="codes of column 'color' outside"):
        decode(schema, np.array([[0, 0, 4]]), np.random.default_rng(0))
    empty = decode(schema, np.zeros((0, 3), dtype=np.uint8), np.random.default_rng(0))
    assert list(empty.columns) == list(schema.names) and len(empty) == 0


def test_repeated_data_column_is_refused() -> None:
    df = pd.DataFrame([[1, 0.5, "red", "green"]], columns=["age", "score", "color", "color"])
    with pytest.raises(SchemaError, match="d.csv: column 'color' appears more than once"):
        encode(make_schema(), df, source="d.csv")
