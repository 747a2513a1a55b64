"""Schema parsing, validation, normalisation and hashing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cleanroom.errors import SchemaError
from cleanroom.schema import MISSING, OTHER, Column, Policy, Schema
from tests.schema_paths import ADULT_DIR

ADULT_SCHEMA = ADULT_DIR / "schema.json"


def small_schema_dict() -> dict[str, Any]:
    return {
        "policy": {"unknown_category": "other"},
        "columns": [
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
            {
                "name": "color",
                "type": "categorical",
                "categories": ["red", "green"],
                "policy": {"unknown_category": "reject", "missing": "reject"},
            },
            {"name": "label", "type": "categorical", "categories": ["0", "1"], "target": True},
        ],
    }


def test_levels_domain_and_target() -> None:
    schema = Schema.from_dict(small_schema_dict())
    assert schema.domain.attrs == ("age", "score", "color", "label")
    assert schema.domain.shape == (4, 5, 2, 4)
    assert schema.column("age").levels == ("[0, 18)", "[18, 65)", "[65, 100]", MISSING)
    assert schema.column("label").levels == ("0", "1", OTHER, MISSING)
    assert schema.column("color").levels == ("red", "green")
    assert schema.column("score").bins == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert schema.target == "label"
    assert [c.name for c in schema.identifier_columns] == ["id"]


def test_policy_default_and_override() -> None:
    schema = Schema.from_dict(small_schema_dict())
    assert schema.column("label").policy == Policy("other", "clip", "level")
    assert schema.column("color").policy == Policy("reject", "clip", "reject")


def test_round_trip_and_hash_stable() -> None:
    schema = Schema.from_dict(small_schema_dict())
    again = Schema.from_dict(json.loads(schema.to_json()))
    assert again == schema
    assert again.hash() == schema.hash()
    assert len(schema.hash()) == 64
    # n_bins and the equivalent explicit bins normalise to the same schema
    data = small_schema_dict()
    data["columns"][2] = {
        "name": "score",
        "type": "numerical",
        "lower": 0.0,
        "upper": 1.0,
        "bins": [0, 0.25, 0.5, 0.75, 1],
    }
    assert Schema.from_dict(data).hash() == schema.hash()


def test_hash_changes_with_content() -> None:
    base = Schema.from_dict(small_schema_dict()).hash()
    data = small_schema_dict()
    data["columns"][3]["categories"] = ["red", "blue"]
    assert Schema.from_dict(data).hash() != base
    data = small_schema_dict()
    data["policy"] = {"unknown_category": "missing"}
    assert Schema.from_dict(data).hash() != base


def _with_column(column: dict[str, Any]) -> dict[str, Any]:
    return {"columns": [{"name": "x", "type": "categorical", "categories": ["a"]}, column]}


@pytest.mark.parametrize(
    ("column", "fragment"),
    [
        (
            {"name": "n", "type": "numerical", "lower": 0, "upper": 10, "bins": [0, 5, 5, 10]},
            "strictly increasing",
        ),
        (
            {"name": "n", "type": "numerical", "lower": 0, "upper": 10, "bins": [1, 5, 10]},
            "must start at lower",
        ),
        ({"name": "n", "type": "numerical", "lower": 0, "upper": 10, "bins": [0, 5, 9]}, "end at upper"),
        (
            {
                "name": "n",
                "type": "numerical",
                "lower": 0,
                "upper": 2,
                "bins": [0, 0.2, 0.6, 2],
                "integer": True,
            },
            "holds no integer",
        ),
        ({"name": "n", "type": "numerical", "lower": 10, "upper": 0}, "below upper"),
        ({"name": "n", "type": "numerical", "upper": 3}, "needs lower and upper"),
        ({"name": "n", "type": "numerical", "lower": 0, "upper": 1, "n_bins": 0}, "n_bins"),
        ({"name": "c", "type": "categorical", "categories": ["a", "b", "a"]}, "duplicate category 'a'"),
        ({"name": "c", "type": "categorical", "categories": []}, "non-empty list"),
        ({"name": "c", "type": "categorical", "categories": [1, 2]}, "must be strings"),
        ({"name": "c", "type": "categorical", "categories": ["__other__"]}, "reserved"),
        ({"name": "c", "type": "text"}, "unknown type 'text'"),
        ({"name": "c", "type": "categorical", "categories": "abc"}, "must be a list"),
        ({"name": "c", "type": "categorical", "categories": ["a"], "colour": 1}, "unknown keys"),
        ({"name": "c", "type": "categorical", "categories": ["a"], "policy": {"missing": "drop"}}, "missing"),
        ({"name": "x", "type": "categorical", "categories": ["b"]}, "duplicate column names ['x']"),
        (
            {
                "name": "n",
                "type": "numerical",
                "lower": 0,
                "upper": 1,
                "policy": {"out_of_range": "missing", "missing": "reject"},
            },
            "missing values are rejected",
        ),
        ({"name": "t", "type": "identifier", "target": True}, "identifier column cannot be the target"),
    ],
)
def test_validation_errors_name_the_column(column: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(_with_column(column))
    message = str(info.value)
    assert fragment in message
    assert repr(column["name"]) in message or f"[{column['name']!r}]" in message


def test_integer_bins_last_bin_closed_may_be_a_point() -> None:
    column = Column("n", "numerical", lower=0, upper=2, bins=(0, 1, 2), integer=True)
    assert column.n_levels == 3
    Column("n", "numerical", lower=0, upper=2, bins=(0, 1.5, 2), integer=True)  # [1.5, 2] holds 2


def test_more_than_one_target() -> None:
    data = {
        "columns": [
            {"name": "a", "type": "categorical", "categories": ["x"], "target": True},
            {"name": "b", "type": "categorical", "categories": ["y"], "target": True},
        ]
    }
    with pytest.raises(SchemaError, match=r"more than one target column: \['a', 'b'\]"):
        Schema.from_dict(data)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            _with_column({"name": "n", "type": "numerical", "lower": 0, "upper": 1, "bins": [0, 0.5, 0.4, 1]})
        )
    )
    with pytest.raises(SchemaError, match=r"bad\.json: column 'n': bins must be strictly increasing"):
        Schema.load(path)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SchemaError, match=r"broken\.json: not valid JSON"):
        Schema.load(broken)
    with pytest.raises(SchemaError, match=r"absent\.json: cannot read"):
        Schema.load(tmp_path / "absent.json")


def test_save_and_load(tmp_path: Path) -> None:
    schema = Schema.from_dict(small_schema_dict())
    schema.save(tmp_path / "s.json")
    assert Schema.load(tmp_path / "s.json") == schema


@pytest.mark.skipif(not ADULT_SCHEMA.exists(), reason="shared adult data not available")
def test_adult_schema_loads() -> None:
    schema = Schema.load(ADULT_SCHEMA)
    assert schema.target == "income"
    assert len(schema.domain) == 15
    assert schema.column("education_num").categories[12] == "13"
    assert schema.domain.size("age") == 16  # 15 bins + missing
    assert schema.domain.size("income") == 3


def test_documented_example_is_valid() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text(encoding="utf-8")
    example = text.split("```json", 1)[1].split("```", 1)[0]
    schema = Schema.from_dict(json.loads(example))
    assert schema.target == "premium_upgrade"
    assert schema.domain.shape == (7, 11, 5, 3)


def test_column_without_name_is_named_by_position() -> None:
    with pytest.raises(SchemaError, match=r"column #1: name \(None\) must be a non-empty string"):
        Schema.from_dict(_with_column({"type": "identifier"}))
