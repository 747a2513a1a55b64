"""Drafting a schema from data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cleanroom.encoding import encode
from cleanroom.errors import InvalidInput, SchemaError
from cleanroom.sample_data import generate
from cleanroom.schema_infer import DOMAIN_WARNING, infer_schema, nice_step


def test_infers_types_bins_and_target() -> None:
    frame = generate(3000, seed=1)
    schema = infer_schema(frame, target="premium_upgrade", max_categories=30)
    types = {c.name: c.type for c in schema.columns}
    assert types["customer_id"] == "identifier"
    assert types["region"] == "categorical" and types["country"] == "categorical"
    assert types["age"] == "numerical" and types["avg_fare"] == "numerical"
    assert schema.target == "premium_upgrade"
    age = schema.column("age")
    assert age.integer and age.lower is not None and age.upper is not None
    assert age.lower <= frame["age"].min() and age.upper >= frame["age"].max()
    steps = np.diff(age.bins)
    assert np.allclose(steps, steps[0]) and age.n_bins <= 10
    assert not schema.column("avg_fare").integer
    report = encode(schema, frame, source="draft").report
    assert report.adjusted == 0


def test_few_integer_values_become_categorical() -> None:
    frame = pd.DataFrame({"flag": [0, 1, 1, 0], "x": [0.5, 1.5, 2.25, 9.0]})
    schema = infer_schema(frame)
    assert schema.column("flag").categories == ("0", "1")
    assert schema.column("x").type == "numerical"


def test_reads_csv_and_parquet(tmp_path: Path) -> None:
    frame = generate(500, seed=2)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    from_csv, from_parquet = infer_schema(tmp_path / "d.csv"), infer_schema(tmp_path / "d.parquet")
    assert from_csv.names == tuple(frame.columns) == from_parquet.names
    with pytest.raises(InvalidInput, match=r"d\.txt: unsupported data file type"):
        infer_schema(tmp_path / "d.txt")


def test_bad_target() -> None:
    frame = generate(200, seed=3)
    with pytest.raises(SchemaError, match="'nope' is not a column"):
        infer_schema(frame, target="nope")
    with pytest.raises(SchemaError, match="looks like an identifier"):
        infer_schema(frame, target="customer_id")


@pytest.mark.parametrize(
    ("span", "n_bins", "integer", "step"),
    [
        (73, 10, True, 10.0),
        (1.0, 4, False, 0.25),
        (3, 10, True, 1.0),
        (4900, 10, False, 500.0),
        (0.07, 10, False, 0.01),
    ],
)
def test_nice_step(span: float, n_bins: int, integer: bool, step: float) -> None:
    assert nice_step(span, n_bins, integer) == pytest.approx(step)


def test_warning_text() -> None:
    assert "NOT" in DOMAIN_WARNING and "review" in DOMAIN_WARNING.lower()
