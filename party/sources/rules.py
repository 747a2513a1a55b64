"""Per-column encoding rules, derived once from a `cleanroom.schema.Schema`.

The SQL sources need, for every measured column, its levels and policies in a flat form. This module is
the one place that reads the Schema's attributes, so the SQL generators depend only on `ColumnRule`.

Level layout (docs/design.md, "Schema and encoding"): a categorical column has its categories in order, then
`__other__` if unknown categories map to `other`, then `__missing__` unless missing values are rejected. A
numerical column has one level per bin (bin i = [e_i, e_{i+1}), the last bin closed), then `__missing__`
on the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REJECT = -1  # SQL code of a value the schema's policy rejects (never a real level)

UNKNOWN_POLICIES = ("reject", "other", "missing")
OUT_OF_RANGE_POLICIES = ("clip", "reject", "missing")
MISSING_POLICIES = ("level", "reject")


@dataclass(frozen=True)
class ColumnRule:
    """How one measured column is encoded: kind, categories or bin edges, policies."""

    name: str
    kind: str  # "categorical" | "numerical"
    categories: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    unknown_category: str = "reject"
    out_of_range: str = "clip"
    missing: str = "level"

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "numerical"):
            raise ValueError(f"kind of column {self.name!r} ({self.kind!r}) must be categorical or numerical")
        if self.kind == "categorical" and not self.categories:
            raise ValueError(f"categorical column {self.name!r} has no categories")
        if self.kind == "numerical" and (len(self.edges) < 2 or list(self.edges) != sorted(set(self.edges))):
            raise ValueError(
                f"bin edges of column {self.name!r} ({self.edges}) must be >= 2 increasing values"
            )
        for value, allowed, what in (
            (self.unknown_category, UNKNOWN_POLICIES, "unknown_category"),
            (self.out_of_range, OUT_OF_RANGE_POLICIES, "out_of_range"),
            (self.missing, MISSING_POLICIES, "missing"),
        ):
            if value not in allowed:
                raise ValueError(
                    f"{what} policy of column {self.name!r} ({value!r}) must be one of {allowed}"
                )

    @property
    def n_bins(self) -> int:
        return len(self.edges) - 1

    @property
    def other_code(self) -> int:
        """Code of `__other__`, or REJECT/missing code when unknown categories are not kept as a level."""
        if self.unknown_category == "other":
            return len(self.categories)
        return self.missing_code if self.unknown_category == "missing" else REJECT

    @property
    def missing_code(self) -> int:
        if self.missing == "reject":
            return REJECT
        if self.kind == "numerical":
            return self.n_bins
        return len(self.categories) + (1 if self.unknown_category == "other" else 0)

    @property
    def n_levels(self) -> int:
        base = self.n_bins if self.kind == "numerical" else len(self.categories)
        other = 1 if self.kind == "categorical" and self.unknown_category == "other" else 0
        return base + other + (0 if self.missing == "reject" else 1)

    def out_of_range_code(self, high: bool) -> int:
        if self.out_of_range == "clip":
            return self.n_bins - 1 if high else 0
        return self.missing_code if self.out_of_range == "missing" else REJECT


@dataclass(frozen=True)
class SchemaRules:
    """Rules for the measured columns (domain order) plus the names of identifier columns."""

    columns: tuple[ColumnRule, ...]
    identifiers: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.columns)

    def rule(self, name: str) -> ColumnRule:
        for rule in self.columns:
            if rule.name == name:
                return rule
        raise KeyError(f"column {name!r} is not a measured column of the schema")


def rules_from_schema(schema: Any) -> SchemaRules:
    """Flatten a `cleanroom.schema.Schema` into `SchemaRules` (measured columns in domain order)."""
    measured: list[ColumnRule] = []
    identifiers: list[str] = []
    for column in schema.columns:
        if column.type == "identifier":
            identifiers.append(column.name)
            continue
        rule = _rule_of(column)
        expected = (column.n_levels, column.missing_code, column.other_code)
        if (rule.n_levels, _level(rule.missing_code), _other(rule)) != expected:
            raise ValueError(f"column {rule.name!r}: level layout of the SQL rules differs from the schema's")
        measured.append(rule)
    rules = SchemaRules(tuple(measured), tuple(identifiers))
    if tuple(schema.domain.attrs) != rules.names:
        raise ValueError(
            f"schema domain {schema.domain.attrs} differs from its measured columns {rules.names}"
        )
    return rules


def _level(code: int) -> int | None:
    return None if code == REJECT else code


def _other(rule: ColumnRule) -> int | None:
    return rule.other_code if rule.kind == "categorical" and rule.unknown_category == "other" else None


def _rule_of(column: Any) -> ColumnRule:
    policy = column.policy
    if column.type == "categorical":
        return ColumnRule(
            name=column.name,
            kind="categorical",
            categories=tuple(str(c) for c in column.categories),
            unknown_category=policy.unknown_category,
            missing=policy.missing,
        )
    return ColumnRule(
        name=column.name,
        kind="numerical",
        edges=tuple(float(e) for e in column.bins),
        out_of_range=policy.out_of_range,
        missing=policy.missing,
    )
