"""Reading data files so that category strings survive: "TRUE", "FALSE", "007", "NA" stay what they are.

pandas' default CSV reader guesses types: "TRUE"/"FALSE" become booleans (then str() gives "True"), "007"
becomes the integer 7, and "NA", "null" or "None" become missing values. A categorical column's value must be
compared with the schema's categories as the exact text in the file, so every path that reads a CSV (staged
synthetic data at a party, the coordinator's own results, a schema draft) reads it here:

- `read_frame(path, schema)`: categorical and identifier columns as strings; only an empty cell is missing;
  numerical columns parsed as numbers (empty -> NaN). Parquet files keep their stored types.
- `read_untyped(path)`: no schema yet (drafting one): every column as text, then a column becomes numeric
  only if every non-empty value is a plain number whose text a number round-trips to (no leading zeros,
  no "TRUE"), so identifier-like codes such as "007" stay strings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from cleanroom.errors import InvalidInput
from cleanroom.schema import NUMERICAL, Schema

_PLAIN_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


def csv_options(schema: Schema) -> dict[str, Any]:
    """`pandas.read_csv` keyword arguments: text dtypes for non-numerical columns, only "" is missing."""
    text = {c.name: str for c in schema.columns if c.type != NUMERICAL}
    return {"dtype": text, "keep_default_na": False, "na_values": [""]}


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InvalidInput(f"{path}: unsupported data file type {suffix!r} (expected .csv or .parquet)")
    return suffix


def read_frame(path: str | Path, schema: Schema) -> pd.DataFrame:
    """A CSV (categorical and identifier columns as exact text) or Parquet file as a frame."""
    path = Path(path)
    is_csv = _suffix(path) == ".csv"
    frame: pd.DataFrame = pd.read_csv(path, **csv_options(schema)) if is_csv else pd.read_parquet(path)
    return frame


def _numeric_or_text(column: pd.Series) -> pd.Series:
    present = column.dropna()
    if len(present) and present.map(lambda v: bool(_PLAIN_NUMBER.match(v.strip()))).all():
        return pd.to_numeric(column.str.strip())
    return column


def read_untyped(path: str | Path) -> pd.DataFrame:
    """A CSV read as text whose plain-number columns become numeric (Parquet: stored types)."""
    path = Path(path)
    if _suffix(path) != ".csv":
        return pd.read_parquet(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return frame.apply(_numeric_or_text)
