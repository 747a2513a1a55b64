"""Drafting a schema from a local data file, for a data owner to review and edit before proposing it.

`infer_schema` looks at the data, so its output is NOT private: category lists reveal which values occur
(rare ones may single out a person) and bounds reveal extremes. The draft must be reviewed, generalised
(round bounds, merge or drop rare categories) and agreed before it is shared; `DOMAIN_WARNING` says so and the
CLI prints it. Numerical bounds are widened to round numbers and bins are equal-width with a round step.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.errors import InvalidInput, SchemaError
from cleanroom.frames import read_untyped
from cleanroom.schema import CATEGORICAL, IDENTIFIER, NUMERICAL, Column, Policy, Schema

DOMAIN_WARNING = (
    "WARNING: this schema was drafted from the data itself. Its category lists and numerical bounds are NOT "
    "differentially private: they can reveal rare values and extremes of individual records. Review it, "
    "replace bounds and categories with public or generalised ones, and only then share it with the other "
    "parties."
)

_NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame (by extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".parquet", ".pq"):
            return read_untyped(path)  # "TRUE" or "007" stay categories, not booleans or numbers
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: cannot read data file: {exc}") from None
    raise InvalidInput(f"{path}: unsupported data file type {suffix!r} (expected .csv or .parquet)")


def infer_schema(
    data: pd.DataFrame | str | Path,
    target: str | None = None,
    max_categories: int = 50,
    n_bins: int = 10,
    max_integer_levels: int = 10,
) -> Schema:
    """A draft schema: numbers -> round equal-width bins (few distinct integers -> categorical),
    strings with at most `max_categories` values -> categorical, other strings -> identifier."""
    df = data if isinstance(data, pd.DataFrame) else read_table(data)
    if target is not None and target not in df.columns:
        raise SchemaError(f"target {target!r} is not a column of the data {list(df.columns)}")
    if max_categories < 1 or n_bins < 1:
        raise InvalidInput(f"max_categories ({max_categories}) and n_bins ({n_bins}) must be >= 1")
    policy = Policy(unknown_category="other")
    columns = [
        _infer_column(str(name), df[name], max_categories, n_bins, max_integer_levels, policy)
        for name in df.columns
    ]
    if target is not None:
        columns = [_as_target(c) if c.name == target else c for c in columns]
    return Schema(tuple(columns), policy)


def _as_target(column: Column) -> Column:
    if column.type == IDENTIFIER:
        raise SchemaError(f"target {column.name!r} looks like an identifier (too many distinct values)")
    return replace(column, target=True)


def _infer_column(
    name: str, values: pd.Series, max_categories: int, n_bins: int, max_integer_levels: int, policy: Policy
) -> Column:
    present = values.dropna()
    is_number = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
    if is_number and len(present):
        floats = present.to_numpy(dtype=float)
        integral = bool(np.all(np.floor(floats) == floats))
        distinct = np.unique(floats)
        if not (integral and len(distinct) <= max_integer_levels):
            return _numerical(name, floats, integral, n_bins, policy)
        categories = tuple(str(int(v)) for v in distinct)
    else:
        counts = present.astype(str).value_counts()
        if len(counts) > max_categories or len(counts) == 0:
            return Column(name, IDENTIFIER, policy=policy)
        categories = tuple(sorted(counts.index))
    return Column(name, CATEGORICAL, categories=categories, policy=policy)


def nice_step(span: float, n_bins: int, integer: bool) -> float:
    """The smallest round step (1, 2, 2.5 or 5 times a power of ten) giving at most `n_bins` bins."""
    raw = span / n_bins if span > 0 else 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in _NICE_STEPS if m * magnitude >= raw * (1 - 1e-12))
    return max(step, 1.0) if integer else step


def _numerical(name: str, values: np.ndarray, integer: bool, n_bins: int, policy: Policy) -> Column:
    low, high = float(values.min()), float(values.max())
    step = nice_step(high - low, n_bins, integer)
    if integer and step != math.floor(step):
        step = math.ceil(step)
    lower = math.floor(low / step) * step
    upper = max(math.ceil(high / step) * step, lower + step)
    count = round((upper - lower) / step)
    bins = tuple(round(lower + i * step, 10) for i in range(count + 1))
    return Column(name, NUMERICAL, lower=bins[0], upper=bins[-1], bins=bins, integer=integer, policy=policy)


def describe(schema: Schema) -> dict[str, Any]:
    """Short per-column summary for the CLI (type and number of levels)."""
    return {c.name: {"type": c.type, "levels": c.n_levels} for c in schema.columns}
