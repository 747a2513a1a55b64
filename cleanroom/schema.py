"""The public, agreed schema of a collaboration: columns, their levels and the encoding policies.

A schema is a JSON file (format in `docs/schema.md`) that every party agrees on before any data is touched.
It fixes, without looking at anyone's data, how each column is turned into a finite number of levels:

- `categorical`: the listed categories (compared as strings), then `__other__` when unknown values are
  mapped to it, then `__missing__` unless missing values are rejected;
- `numerical`: one level per bin of the edges `bins` (or `n_bins` equal-width bins over [lower, upper]),
  bins right-open except the last one which is closed, then `__missing__`;
- `identifier`: never measured, never in the `Domain`; synthetic output gets fresh random surrogates.

`Column` and `Schema` are frozen value objects that validate themselves; `Schema.load` names the file in
every error. `Schema.hash()` is the SHA-256 of the canonical JSON of the normalised schema, so two parties
holding equivalent files agree on it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cleanroom.domain import Domain
from cleanroom.errors import SchemaError

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
IDENTIFIER = "identifier"
COLUMN_TYPES = (NUMERICAL, CATEGORICAL, IDENTIFIER)

OTHER = "__other__"
MISSING = "__missing__"
RESERVED_LEVELS = (OTHER, MISSING)
DEFAULT_N_BINS = 10

UNKNOWN_CATEGORY_ACTIONS = ("reject", "other", "missing")
OUT_OF_RANGE_ACTIONS = ("clip", "reject", "missing")
MISSING_ACTIONS = ("level", "reject")

_COLUMN_KEYS = {
    "name",
    "type",
    "categories",
    "lower",
    "upper",
    "bins",
    "n_bins",
    "integer",
    "target",
    "policy",
    "join_key",
}
_SCHEMA_KEYS = {"columns", "policy"}


@dataclass(frozen=True)
class Policy:
    """What to do with values the schema does not foresee; every non-reject action is counted."""

    unknown_category: str = "reject"
    out_of_range: str = "clip"
    missing: str = "level"

    def __post_init__(self) -> None:
        _check_choice("unknown_category", self.unknown_category, UNKNOWN_CATEGORY_ACTIONS)
        _check_choice("out_of_range", self.out_of_range, OUT_OF_RANGE_ACTIONS)
        _check_choice("missing", self.missing, MISSING_ACTIONS)

    @classmethod
    def from_dict(cls, data: Any, base: Policy | None = None, where: str = "policy") -> Policy:
        """`data` overrides the fields of `base` (defaults when None)."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"{where} must be an object, got {type(data).__name__}")
        unknown = set(data) - {"unknown_category", "out_of_range", "missing"}
        if unknown:
            raise SchemaError(f"{where} has unknown keys {sorted(unknown)}")
        try:
            return replace(base or cls(), **{str(k): v for k, v in data.items()})
        except SchemaError as exc:
            raise SchemaError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, str]:
        return {
            "unknown_category": self.unknown_category,
            "out_of_range": self.out_of_range,
            "missing": self.missing,
        }


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise SchemaError(f"{name} ({value!r}) must be one of {list(choices)}")


@dataclass(frozen=True)
class Column:
    """One column; `bins` are always materialised and `policy` is the effective (resolved) policy."""

    name: str
    type: str
    categories: tuple[str, ...] = ()
    lower: float | None = None
    upper: float | None = None
    bins: tuple[float, ...] = ()
    integer: bool = False
    target: bool = False
    policy: Policy = field(default_factory=Policy)
    join_key: bool = False  # vertical plans: the identifier the parties' records are joined on

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"column name ({self.name!r}) must be a non-empty string")
        if self.type not in COLUMN_TYPES:
            raise SchemaError(
                f"column {self.name!r}: unknown type {self.type!r}, expected one of {list(COLUMN_TYPES)}"
            )
        self._check_policy()
        if self.type == CATEGORICAL:
            self._check_categorical()
        elif self.type == NUMERICAL:
            self._check_numerical()
        else:
            self._check_identifier()
        if self.join_key and self.type != IDENTIFIER:
            raise self._fail("join_key applies to identifier columns only")

    def _fail(self, message: str) -> SchemaError:
        return SchemaError(f"column {self.name!r}: {message}")

    def _check_policy(self) -> None:
        maps_to_missing = (self.type == CATEGORICAL and self.policy.unknown_category == "missing") or (
            self.type == NUMERICAL and self.policy.out_of_range == "missing"
        )
        if maps_to_missing and self.policy.missing == "reject":
            raise self._fail("a policy maps values to the missing level, but missing values are rejected")

    def _check_categorical(self) -> None:
        if not self.categories:
            raise self._fail("a categorical column needs a non-empty list of categories")
        if not all(isinstance(c, str) for c in self.categories):
            raise self._fail("categories must be strings (data values are compared after str())")
        seen: set[str] = set()
        for category in self.categories:
            if category in seen:
                raise self._fail(f"duplicate category {category!r}")
            if category in RESERVED_LEVELS:
                raise self._fail(f"category {category!r} is a reserved level name")
            seen.add(category)
        if self.bins or self.lower is not None or self.upper is not None or self.integer:
            raise self._fail("bins/lower/upper/integer only apply to numerical columns")

    def _check_numerical(self) -> None:
        if self.categories:
            raise self._fail("categories only apply to categorical columns")
        if self.lower is None or self.upper is None:
            raise self._fail("a numerical column needs lower and upper")
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)) or self.lower >= self.upper:
            raise self._fail(f"lower ({self.lower}) must be finite and below upper ({self.upper})")
        edges = self.bins
        if len(edges) < 2:
            raise self._fail(f"bins {list(edges)} need at least two edges")
        for left, right in zip(edges, edges[1:], strict=False):
            if not left < right:
                raise self._fail(f"bins must be strictly increasing, got {left} then {right}")
        if edges[0] != self.lower or edges[-1] != self.upper:
            raise self._fail(
                f"bins must start at lower ({self.lower}) and end at upper ({self.upper}), "
                f"got {edges[0]} .. {edges[-1]}"
            )
        if self.integer:
            self._check_integer_bins()

    def _check_integer_bins(self) -> None:
        last = len(self.bins) - 2
        for i, (left, right) in enumerate(zip(self.bins, self.bins[1:], strict=False)):
            first_int = math.ceil(left)
            if first_int > right or (first_int == right and i != last):
                raise self._fail(
                    f"integer column: bin [{left}, {right}{']' if i == last else ')'} holds no integer"
                )

    def _check_identifier(self) -> None:
        if self.target:
            raise self._fail("an identifier column cannot be the target")
        if self.categories or self.bins or self.lower is not None or self.upper is not None:
            raise self._fail("identifier columns take no categories, bins or bounds")

    @property
    def measured(self) -> bool:
        return self.type != IDENTIFIER

    @property
    def n_bins(self) -> int:
        return max(len(self.bins) - 1, 0)

    @property
    def has_other(self) -> bool:
        return self.type == CATEGORICAL and self.policy.unknown_category == "other"

    @property
    def has_missing(self) -> bool:
        return self.measured and self.policy.missing == "level"

    @property
    def levels(self) -> tuple[str, ...]:
        """Level labels in code order (empty for identifiers)."""
        if self.type == IDENTIFIER:
            return ()
        if self.type == CATEGORICAL:
            values = list(self.categories) + ([OTHER] if self.has_other else [])
        else:
            values = [self._bin_label(i) for i in range(self.n_bins)]
        return tuple(values + ([MISSING] if self.has_missing else []))

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def missing_code(self) -> int | None:
        return self.n_levels - 1 if self.has_missing else None

    @property
    def other_code(self) -> int | None:
        return len(self.categories) if self.has_other else None

    def _bin_label(self, i: int) -> str:
        close = "]" if i == self.n_bins - 1 else ")"
        return f"[{_number(self.bins[i])}, {_number(self.bins[i + 1])}{close}"

    @classmethod
    def from_dict(cls, data: Any, default_policy: Policy, position: int = 0) -> Column:
        if not isinstance(data, Mapping):
            raise SchemaError(f"column #{position} must be an object, got {type(data).__name__}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"column #{position}: name ({name!r}) must be a non-empty string")
        label = f"column {name!r}"
        categories = data.get("categories", [])
        if not isinstance(categories, list):
            raise SchemaError(f"{label}: categories must be a list of strings")
        unknown = set(data) - _COLUMN_KEYS
        if unknown:
            raise SchemaError(f"{label}: unknown keys {sorted(unknown)}")
        policy = Policy.from_dict(data.get("policy", {}), default_policy, where=f"{label}: policy")
        kind = data.get("type")
        lower, upper = _optional_number(data, "lower", label), _optional_number(data, "upper", label)
        bins: tuple[float, ...] = ()
        if kind == NUMERICAL:
            bins = _materialise_bins(data, lower, upper, label)
        return cls(
            name=name,
            type=str(kind),
            categories=tuple(categories),
            lower=lower,
            upper=upper,
            bins=bins,
            integer=_flag(data, "integer", label),
            target=_flag(data, "target", label),
            policy=policy,
            join_key=_flag(data, "join_key", label),
        )

    def to_dict(self, default_policy: Policy) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == CATEGORICAL:
            out["categories"] = list(self.categories)
        if self.type == NUMERICAL:
            out.update(
                lower=_number(self.lower), upper=_number(self.upper), bins=[_number(e) for e in self.bins]
            )
            out["integer"] = self.integer
        if self.target:
            out["target"] = True
        if self.join_key:
            out["join_key"] = True
        overrides = {k: v for k, v in self.policy.to_dict().items() if getattr(default_policy, k) != v}
        if overrides and self.measured:
            out["policy"] = overrides
        return out


def _number(value: float | None) -> int | float:
    """Integral floats as ints, so the canonical JSON does not depend on how edges were written."""
    assert value is not None
    return int(value) if float(value).is_integer() else float(value)


def _optional_number(data: Mapping[str, Any], key: str, label: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(f"{label}: {key} ({value!r}) must be a number")
    return float(value)


def _flag(data: Mapping[str, Any], key: str, label: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise SchemaError(f"{label}: {key} ({value!r}) must be true or false")
    return value


def _materialise_bins(
    data: Mapping[str, Any], lower: float | None, upper: float | None, label: str
) -> tuple[float, ...]:
    bins = data.get("bins")
    if bins is not None:
        if "n_bins" in data:
            raise SchemaError(f"{label}: give either bins or n_bins, not both")
        if not isinstance(bins, list) or not all(
            isinstance(e, int | float) and not isinstance(e, bool) for e in bins
        ):
            raise SchemaError(f"{label}: bins must be a list of numbers")
        return tuple(float(e) for e in bins)
    n_bins = data.get("n_bins", DEFAULT_N_BINS)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise SchemaError(f"{label}: n_bins ({n_bins!r}) must be a positive integer")
    if lower is None or upper is None:
        raise SchemaError(f"{label}: a numerical column needs lower and upper")
    width = (upper - lower) / n_bins
    inner = [lower + i * width for i in range(1, n_bins)]
    return (lower, *inner, upper)


@dataclass(frozen=True)
class Schema:
    """Ordered columns plus the schema-level default policy (already folded into each column's policy)."""

    columns: tuple[Column, ...]
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        if not self.columns:
            raise SchemaError("a schema needs at least one column")
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SchemaError(f"duplicate column names {duplicates}")
        targets = [c.name for c in self.columns if c.target]
        if len(targets) > 1:
            raise SchemaError(f"more than one target column: {targets}")
        keys = [c.name for c in self.columns if c.join_key]
        if len(keys) > 1:
            raise SchemaError(f"more than one join_key column: {keys}")
        if not self.measured_columns:
            raise SchemaError("a schema needs at least one numerical or categorical column")

    @classmethod
    def from_dict(cls, data: Any) -> Schema:
        if not isinstance(data, Mapping):
            raise SchemaError(f"a schema must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - _SCHEMA_KEYS
        if unknown:
            raise SchemaError(f"unknown top-level keys {sorted(unknown)}")
        columns = data.get("columns")
        if not isinstance(columns, list):
            raise SchemaError("'columns' must be a list of column objects")
        policy = Policy.from_dict(data.get("policy", {}))
        return cls(tuple(Column.from_dict(c, policy, i) for i, c in enumerate(columns)), policy)

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read and validate a schema file; every error names the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SchemaError(f"{path}: cannot read schema file: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Normalised form: bins materialised, per-column policy only where it differs from the default."""
        return {"columns": [c.to_dict(self.policy) for c in self.columns], "policy": self.policy.to_dict()}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column_kinds(self) -> dict[str, str]:
        """Column name -> `numerical` | `categorical` | `identifier`, in schema order."""
        return {c.name: c.type for c in self.columns}

    @property
    def measured_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.measured)

    @property
    def identifier_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.measured)

    @property
    def domain(self) -> Domain:
        measured = self.measured_columns
        return Domain(tuple(c.name for c in measured), tuple(c.n_levels for c in measured))

    @property
    def target(self) -> str | None:
        return next((c.name for c in self.columns if c.target), None)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"column {name!r} is not in the schema {list(self.names)}")
