"""Turning a data frame into integer codes over the schema's domain, and synthetic codes back into values.

`encode` is vectorised (pandas categoricals and `np.searchsorted`, no per-row Python): categorical values are
compared as strings (an integer 13, or a float 13.0, in the data matches the category "13"); numerical values
are cast to floats, then binned with right-open bins and a closed last bin. Missing values (NaN/None/empty or
blank strings) go to the `__missing__` level. Values the schema does not foresee are handled by the column's
policy; every non-reject action is counted in the `EncodingReport`; nothing is ever dropped.

`decode` maps codes back to a frame with exactly the schema's columns: a category string, the string
`"__other__"`, NaN for `__missing__`, or a uniform random value inside a bin (an integer when the column is
integer). Identifier columns get fresh unique random surrogates from `secrets`.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.domain import Domain
from cleanroom.errors import DataError, SchemaError
from cleanroom.schema import CATEGORICAL, OTHER, Column, Schema


@dataclass(frozen=True)
class ColumnCounts:
    """Per-column counts of values changed by a policy; `missing` counts genuine missing values kept."""

    name: str
    clipped: int = 0
    other: int = 0
    missing_mapped: int = 0
    missing: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "clipped": self.clipped,
            "other": self.other,
            "missing_mapped": self.missing_mapped,
            "missing": self.missing,
        }


@dataclass(frozen=True)
class EncodingReport:
    """What encoding did to one source's data: row count and per-column policy counts (no data values)."""

    source: str
    rows: int
    columns: tuple[ColumnCounts, ...]

    def column(self, name: str) -> ColumnCounts:
        for counts in self.columns:
            if counts.name == name:
                return counts
        raise KeyError(f"column {name!r} is not in the encoding report of {self.source}")

    @property
    def adjusted(self) -> int:
        """Values changed by a policy (clipped, mapped to other or to missing); genuine missing excluded."""
        return sum(c.clipped + c.other + c.missing_mapped for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "columns": {c.name: c.to_dict() for c in self.columns},
        }


@dataclass(frozen=True)
class EncodedData:
    domain: Domain
    codes: np.ndarray
    report: EncodingReport

    def __post_init__(self) -> None:
        if self.codes.ndim != 2 or self.codes.shape[1] != len(self.domain):
            raise ValueError(
                f"codes shape {self.codes.shape} does not fit a domain of {len(self.domain)} attributes"
            )


def code_dtype(domain: Domain) -> np.dtype[Any]:
    """The smallest unsigned integer dtype holding every code of the domain."""
    largest = max(domain.shape, default=1)
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def encode(schema: Schema, df: pd.DataFrame, source: str = "<data>") -> EncodedData:
    """Encode every measured column of `df`; raises SchemaError/DataError naming `source`."""
    missing = [c.name for c in schema.measured_columns if c.name not in df.columns]
    if missing:
        raise SchemaError(f"{source}: column {missing[0]!r} of the schema is missing (absent: {missing})")
    repeated = sorted({c.name for c in schema.measured_columns if list(df.columns).count(c.name) > 1})
    if repeated:
        raise SchemaError(f"{source}: column {repeated[0]!r} appears more than once")
    domain = schema.domain
    codes = np.empty((len(df), len(domain)), dtype=code_dtype(domain))
    counts = []
    for j, column in enumerate(schema.measured_columns):
        encoder = _encode_categorical if column.type == CATEGORICAL else _encode_numerical
        codes[:, j], column_counts = encoder(column, df[column.name], source)
        counts.append(column_counts)
    return EncodedData(domain, codes, EncodingReport(source, len(df), tuple(counts)))


_UNKNOWN = -1
_MISSING = -2


def is_missing(value: object) -> bool:
    """An empty or blank string, NaN, None, pd.NA or pd.NaT: the schema's missing level."""
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return value is None or value is pd.NA or value is pd.NaT


def _category_key(value: object) -> str:
    """str() of a value, with integral floats written as integers (13.0 -> "13")."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _category_status(column: Column, values: pd.Series) -> np.ndarray:
    """Per row: the category index, _UNKNOWN or _MISSING (work is per distinct value, not per row)."""
    factor, uniques = pd.factorize(values, use_na_sentinel=True)
    index = {category: i for i, category in enumerate(column.categories)}
    lookup = [_MISSING if is_missing(u) else index.get(_category_key(u), _UNKNOWN) for u in uniques]
    # the NA sentinel -1 picks the appended last entry
    return np.asarray([*lookup, _MISSING], dtype=np.int64)[factor]


def _reject(source: str, column: Column, values: pd.Series, bad: np.ndarray, what: str) -> DataError:
    row = int(np.flatnonzero(bad)[0])
    value = values.iloc[row]
    value = value.item() if isinstance(value, np.generic) else value
    return DataError(
        f"{source}: column {column.name!r}, row {row}: {what} {value!r} ({int(bad.sum())} such rows)",
        column=column.name,
    )


def _missing_counts(column: Column, values: pd.Series, missing: np.ndarray, source: str) -> int:
    if column.policy.missing == "reject" and missing.any():
        raise _reject(source, column, values, missing, "missing value rejected by policy, got")
    return int(missing.sum())


def _encode_categorical(column: Column, values: pd.Series, source: str) -> tuple[np.ndarray, ColumnCounts]:
    codes = _category_status(column, values)
    missing = codes == _MISSING
    n_missing = _missing_counts(column, values, missing, source)
    unknown = codes == _UNKNOWN
    action = column.policy.unknown_category
    if unknown.any() and action == "reject":
        raise _reject(source, column, values, unknown, "unknown category")
    if action == "other":
        codes[unknown] = len(column.categories)
    elif action == "missing":
        missing |= unknown
    if missing.any():
        codes[missing] = _required_missing_code(column, source)
    n_unknown = int(unknown.sum())
    counts = ColumnCounts(
        column.name,
        other=n_unknown if action == "other" else 0,
        missing_mapped=n_unknown if action == "missing" else 0,
        missing=n_missing,
    )
    return codes, counts


def _required_missing_code(column: Column, source: str) -> int:
    code = column.missing_code
    if code is None:
        raise DataError(
            f"{source}: column {column.name!r} has no missing level (missing policy is reject)", column.name
        )
    return code


def _numeric_values(column: Column, values: pd.Series, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Values as floats and the missing mask; anything that is neither a number nor missing is an error."""
    dtype = values.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        return numbers, np.isnan(numbers)
    factor, uniques = pd.factorize(values, use_na_sentinel=True)
    distinct = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
    blank = distinct.map(is_missing).to_numpy(dtype=bool)
    is_bool = distinct.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    parsed = pd.to_numeric(distinct.where(~blank & ~is_bool), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    failed_distinct = np.isnan(parsed) & ~blank
    failed = np.append(failed_distinct, False)[factor]
    if failed.any():
        raise _reject(source, column, values, failed, "cannot cast to a number:")
    return np.append(parsed, np.nan)[factor], np.append(blank, True)[factor]


def _encode_numerical(column: Column, values: pd.Series, source: str) -> tuple[np.ndarray, ColumnCounts]:
    numbers, missing = _numeric_values(column, values, source)
    n_missing = _missing_counts(column, values, missing, source)
    assert column.lower is not None and column.upper is not None
    outside = ~missing & ((numbers < column.lower) | (numbers > column.upper))
    action = column.policy.out_of_range
    if outside.any() and action == "reject":
        raise _reject(source, column, values, outside, f"outside [{column.lower:g}, {column.upper:g}]:")
    edges = np.asarray(column.bins, dtype=float)
    clipped = np.clip(np.where(missing, column.lower, numbers), column.lower, column.upper)
    codes = np.searchsorted(edges, clipped, side="right").astype(np.int64) - 1
    np.minimum(codes, column.n_bins - 1, out=codes)
    if action == "missing":
        missing = missing | outside
    if missing.any():
        codes[missing] = _required_missing_code(column, source)
    n_outside = int(outside.sum())
    counts = ColumnCounts(
        column.name,
        clipped=n_outside if action == "clip" else 0,
        missing_mapped=n_outside if action == "missing" else 0,
        missing=n_missing,
    )
    return codes, counts


def decode(schema: Schema, codes: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Synthetic values for `codes` (n_rows x len(schema.domain)); columns in schema order."""
    domain = schema.domain
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(domain):
        raise ValueError(f"codes shape {codes.shape} does not fit a domain of {len(domain)} attributes")
    n_rows = codes.shape[0]
    out: dict[str, Any] = {}
    for column in schema.columns:
        if not column.measured:
            out[column.name] = surrogate_ids(n_rows)
            continue
        column_codes = codes[:, domain.index(column.name)].astype(np.int64)
        if column_codes.size and (column_codes.min() < 0 or column_codes.max() >= column.n_levels):
            raise ValueError(f"codes of column {column.name!r} outside [0, {column.n_levels})")
        if column.type == CATEGORICAL:
            out[column.name] = _decode_categorical(column, column_codes)
        else:
            out[column.name] = _decode_numerical(column, column_codes, rng)
    return pd.DataFrame(out, columns=list(schema.names))


def surrogate_ids(n_rows: int) -> np.ndarray:
    """`n_rows` distinct random hex identifiers (128 bits each; redrawn in the negligible case of a clash)."""
    while True:
        ids = np.array([secrets.token_hex(16) for _ in range(n_rows)], dtype=object)
        if len(set(ids)) == n_rows:
            return ids


def _decode_categorical(column: Column, codes: np.ndarray) -> pd.Series:
    labels: list[object] = [*column.categories, *([OTHER] if column.has_other else [])]
    if column.has_missing:
        labels.append(np.nan)
    return pd.Series(np.array(labels, dtype=object)[codes], dtype=object)


def _decode_numerical(column: Column, codes: np.ndarray, rng: np.random.Generator) -> pd.Series:
    missing = codes == column.n_bins if column.has_missing else np.zeros(codes.shape, dtype=bool)
    bins = np.where(missing, 0, codes)
    edges = np.asarray(column.bins, dtype=float)
    low, high = edges[bins], edges[bins + 1]
    last = bins == column.n_bins - 1
    if column.integer:
        first = np.ceil(low)
        # right-open bins end at the last integer below the edge; the closed last bin includes it
        final = np.where(last, np.floor(high), np.ceil(high) - 1)
        values = rng.integers(first.astype(np.int64), final.astype(np.int64), endpoint=True)
        if missing.any():
            return pd.Series(pd.array(np.where(missing, 0, values), dtype="Int64")).mask(missing)
        return pd.Series(values.astype(np.int64))
    floats = rng.uniform(low, high)
    # guard against rounding up onto a right-open bin's upper edge
    floats = np.where(last, floats, np.minimum(floats, np.nextafter(high, -math.inf)))
    return pd.Series(np.where(missing, np.nan, floats), dtype=np.float64)
