"""Shared helpers for the data-source tests: generated data, schema, writers for CSV/Parquet/PostgreSQL.

(No tests here; the name keeps it inside the part's `tests/test_sources*` files.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cleanroom.schema import Schema

PG_ENV = "CLEANROOM_PG_DSN"

SCHEMA_DICT: dict[str, Any] = {
    "policy": {"unknown_category": "reject", "out_of_range": "clip", "missing": "level"},
    "columns": [
        {"name": "customer_id", "type": "identifier"},
        {
            "name": "age",
            "type": "numerical",
            "lower": 18,
            "upper": 90,
            "bins": [18, 25, 35, 45, 55, 65, 90],
            "integer": True,
        },
        {"name": "fare", "type": "numerical", "lower": 0, "upper": 1000, "n_bins": 8},
        {
            "name": "ratio",
            "type": "numerical",
            "lower": 0,
            "upper": 1,
            "bins": [0, 0.1, 0.25, 0.5, 1],
            "policy": {"out_of_range": "missing"},
        },
        {
            "name": "country",
            "type": "categorical",
            "categories": ["US", "DE", "JP", "FR"],
            "policy": {"unknown_category": "other"},
        },
        {
            "name": "tier",
            "type": "categorical",
            "categories": ["1", "2", "3"],
            "policy": {"unknown_category": "missing"},
        },
        {"name": "segment", "type": "categorical", "categories": ["a", "b"]},
    ],
}


def schema(**overrides: Any) -> Schema:
    """The test schema; `overrides` maps a column name to extra keys (e.g. a policy) for that column."""
    data = {"policy": dict(SCHEMA_DICT["policy"]), "columns": [dict(c) for c in SCHEMA_DICT["columns"]]}
    for column in data["columns"]:
        column.update(overrides.get(column["name"], {}))
    return Schema.from_dict(data)


def frame(n: int = 400, seed: int = 7) -> pd.DataFrame:
    """Mixed data with NaN, +-inf, out-of-range numbers, unknown categories, blank strings, int categories."""
    rng = np.random.default_rng(seed)
    age = pd.array(rng.integers(10, 100, n), dtype="Int64")
    age[rng.random(n) < 0.05] = pd.NA
    fare = rng.normal(500, 400, n)
    fare[rng.random(n) < 0.05] = np.nan
    fare[:2] = [np.inf, -np.inf]
    fare[2] = 1000.0  # the closed last bin
    ratio = rng.uniform(-0.2, 1.2, n)
    ratio[3] = 0.1  # an interior edge
    country = rng.choice(np.array(["US", "DE", "JP", "FR", "BR", "CN"], dtype=object), n)
    country[rng.random(n) < 0.05] = None
    country[4] = "  "  # blank: missing
    country[5] = "\t\xa0\u3000"  # blank too (Python's str.strip() whitespace)
    country[6] = " US"  # not blank, not a category: __other__
    tier = pd.array(rng.integers(1, 5, n), dtype="Int64")  # integers match "1".."3"; 4 is unknown
    tier[rng.random(n) < 0.05] = pd.NA
    segment = rng.choice(np.array(["a", "b"], dtype=object), n)
    ids = np.array([f"id{i:06d}" for i in range(n)], dtype=object)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "age": age,
            "fare": fare,
            "ratio": ratio,
            "country": country,
            "tier": tier,
            "segment": segment,
            "unused": rng.random(n),
        }
    )


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    df.to_parquet(path, index=False)
    return path


def pg_dsn() -> str:
    """The test server's DSN; fails in CI (CI=true), skips elsewhere when none is configured."""
    dsn = os.environ.get(PG_ENV)
    if dsn:
        return dsn
    message = (
        f'no PostgreSQL server: set {PG_ENV} (eval "$(bash scripts/start_postgres.sh)") '
        f"to run the PostgreSQL source tests"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def pg_table(df: pd.DataFrame, types: dict[str, str] | None = None) -> Iterator[str]:
    """Load `df` into a fresh table of the test server; yields its name and drops it afterwards."""
    from party.sources.loading import drop_postgres_table, write_postgres_table

    dsn, table = pg_dsn(), f"cleanroom_test_{uuid.uuid4().hex[:12]}"
    write_postgres_table(dsn, table, df, types=types)
    try:
        yield table
    finally:
        drop_postgres_table(dsn, table)
