"""The `DataSource` interface and the engine-independent half of the SQL sources.

A source answers marginal count tables over the schema's domain without handing rows to the caller:
`count_tables(cliques)` returns int64 tables laid out like `cleanroom.marginals.count_table` (clique in domain
order, C-order). It is all-or-nothing: either every table is returned, or an error is raised (DataError for a
value the schema's policy rejects, naming the source, column, first offending row and value) before any table
leaves the source. `validation_report()` gives the local operator per-column policy counts (no data values).
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.errors import DataError, SchemaError
from party.sources import sql
from party.sources.rules import REJECT, SchemaRules

MAX_SETS_PER_QUERY = 128
Grouped = tuple[np.ndarray, np.ndarray]  # (codes: int64 [rows, len(set)], counts: int64 [rows])


class DataSource(ABC):
    """A party's data, queried where it lives."""

    def __init__(self, name: str, schema: Any, rules: SchemaRules) -> None:
        self.name = name
        self.schema = schema
        self.rules = rules
        self.domain = schema.domain

    @abstractmethod
    def check_schema(self) -> None:
        """Raise SchemaError (naming the source and column) unless every schema column exists and fits."""

    @abstractmethod
    def row_count(self) -> int: ...

    @abstractmethod
    def count_tables(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]: ...

    @abstractmethod
    def validation_report(self) -> dict[str, Any]: ...

    @abstractmethod
    def read_frame(self) -> pd.DataFrame:
        """The whole table as a DataFrame (schema columns only) for local-only use such as evaluation."""

    def close(self) -> None:  # noqa: B027 - sources without resources need nothing
        """Release connections; the source is unusable afterwards."""

    def count(self, clique: Sequence[str]) -> np.ndarray:
        return self.count_tables([clique])[0]

    def __enter__(self) -> DataSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _canonical_positions(self, clique: Sequence[str]) -> tuple[int, ...]:
        unknown = [a for a in clique if a not in self.domain]
        if unknown:
            raise SchemaError(f"{self.name}: clique {tuple(clique)} names columns {unknown} that are not "
                              f"measured columns of the schema")
        if len(set(clique)) != len(clique):
            raise SchemaError(f"{self.name}: clique {tuple(clique)} repeats a column")
        return tuple(self.domain.index(a) for a in self.domain.canonical(tuple(clique)))

    def _empty_error(self) -> DataError:
        return DataError(f"{self.name}: the table is empty (0 data rows); there is nothing to measure")


def maximal_sets(sets: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The distinct sets that are not strict subsets of another; the others are sums of these tables."""
    unique = list(dict.fromkeys(sets))
    return [s for s in unique if not any(set(s) < set(t) for t in unique)]


def marginalise(tables: dict[tuple[int, ...], np.ndarray], group: tuple[int, ...]) -> np.ndarray:
    """The table of `group` (sorted positions) summed out of a computed table of a superset."""
    if group in tables:
        return tables[group].copy()
    source = next(g for g in tables if set(group) <= set(g))
    axes = tuple(i for i, j in enumerate(source) if j not in group)
    return np.asarray(tables[source].sum(axis=axes), dtype=np.int64)


def split_grouping_rows(rows: np.ndarray, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
    """Split GROUPING SETS rows (codes of all columns, NOT_GROUPED where not grouped, then count) by set."""
    grouped = rows[:, :-1] != sql.NOT_GROUPED
    out: dict[tuple[int, ...], Grouped] = {}
    for group in sets:
        pattern = np.zeros(grouped.shape[1], dtype=bool)
        pattern[list(group)] = True
        selected = rows[(grouped == pattern).all(axis=1)]
        out[group] = (selected[:, list(group)], selected[:, -1])
    return out


def missing_column_error(source: str, column: str, available: Sequence[str]) -> SchemaError:
    """SchemaError for a schema column absent from the data, with the closest names as a hint."""
    lowered = {a.lower(): a for a in available}
    hints = difflib.get_close_matches(column, list(available), n=3, cutoff=0.6)
    if column.lower() in lowered and lowered[column.lower()] not in hints:
        hints.insert(0, lowered[column.lower()])
    hint = f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
    return SchemaError(f"{source}: column {column!r} of the schema is missing from the data{hint}")


def report_from_counts(name: str, rules: SchemaRules, counts: Sequence[int]) -> dict[str, Any]:
    """Turn report_query's flat counts into the local validation report (counts only, no values)."""
    statuses = sorted(sql.STATUS_NAMES)
    columns: dict[str, Any] = {}
    rejected: list[str] = []
    for j, rule in enumerate(rules.columns):
        per_status = dict(zip(statuses, counts[1 + j * len(statuses): 1 + (j + 1) * len(statuses)], strict=True))
        entry: dict[str, Any] = {"missing": int(per_status[sql.MISSING]), "policy": _policy_of(rule)}
        if rule.kind == "categorical":
            entry["unknown_category"] = int(per_status[sql.UNKNOWN])
        else:
            entry["below_lower"] = int(per_status[sql.BELOW])
            entry["above_upper"] = int(per_status[sql.ABOVE])
            entry["not_a_number"] = int(per_status[sql.UNCASTABLE])
        entry["rejected"] = int(sum(per_status[s] for s in _rejected(rule)))
        if entry["rejected"]:
            rejected.append(rule.name)
        columns[rule.name] = entry
    return {"source": name, "rows": int(counts[0]), "ok": not rejected and counts[0] > 0,
            "rejected_columns": rejected, "columns": columns}


def _policy_of(rule: Any) -> dict[str, str]:
    if rule.kind == "categorical":
        return {"unknown_category": rule.unknown_category, "missing": rule.missing}
    return {"out_of_range": rule.out_of_range, "missing": rule.missing}


def _rejected(rule: Any) -> tuple[int, ...]:
    statuses = [sql.UNCASTABLE] if rule.kind == "numerical" else []
    if rule.missing == "reject":
        statuses.append(sql.MISSING)
    if rule.kind == "categorical" and rule.unknown_category == "reject":
        statuses.append(sql.UNKNOWN)
    if rule.kind == "numerical" and rule.out_of_range == "reject":
        statuses += [sql.BELOW, sql.ABOVE]
    return tuple(statuses)


class SqlSource(DataSource):
    """Shared logic of the DuckDB and PostgreSQL sources: SQL building and result assembly."""

    dialect: sql.Dialect

    def __init__(self, name: str, schema: Any, rules: SchemaRules) -> None:
        super().__init__(name, schema, rules)
        self._column_sql: tuple[sql.ColumnSql, ...] | None = None

    @abstractmethod
    def _describe(self) -> dict[str, str]:
        """Column name -> SQL type name of the relation."""

    @abstractmethod
    def _relation(self) -> str: ...

    def _codes_relation(self) -> str:
        """A relation with the code columns c0, c1, ...; engines may materialise it once."""
        return f"({sql.encode_query(self._relation(), self._columns())}) AS enc"

    @abstractmethod
    def _fetch(self, query: str) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _locate(self, column: sql.ColumnSql) -> tuple[str, str | None, int]:
        """(where, value as text, status) of the first row whose value the column's policy rejects."""

    def check_schema(self) -> None:
        self._columns()

    def _columns(self) -> tuple[sql.ColumnSql, ...]:
        if self._column_sql is None:
            types = self._describe()
            for name in (*self.rules.names, *self.rules.identifiers):
                if name not in types:
                    raise missing_column_error(self.name, name, list(types))
            self._column_sql = tuple(self._column_of(rule, types[rule.name]) for rule in self.rules.columns)
        return self._column_sql

    def _column_of(self, rule: Any, sql_type: str) -> sql.ColumnSql:
        family = sql.type_family(sql_type)
        if rule.kind == "numerical" and family not in ("numeric", "float", "text"):
            raise SchemaError(f"{self.name}: column {rule.name!r} has type {sql_type}, which cannot be cast to "
                              f"a number for a numerical column")
        return sql.ColumnSql(rule, sql_type, self.dialect)

    def row_count(self) -> int:
        self._columns()
        return int(self._fetch(sql.row_count_query(self._relation()))[0][0])

    def validation_report(self) -> dict[str, Any]:
        counts = self._fetch(sql.report_query(self._relation(), self._columns()))[0]
        return report_from_counts(self.name, self.rules, [int(c) for c in counts])

    @abstractmethod
    def _grouped_counts(self, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
        """For each set of column positions: the distinct code combinations (REJECT included) and counts."""

    def count_tables(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
        columns = self._columns()
        wanted = [self._canonical_positions(c) for c in cliques]
        singles = [(j,) for j in range(len(columns))]  # always covered: they reveal rejected values anywhere
        needed = maximal_sets([*singles, *wanted])
        grouped = self._grouped_counts(needed)
        self._raise_on_rejects(grouped)
        tables = {group: self._scatter(group, *grouped[group]) for group in needed}
        if int(tables[needed[0]].sum()) == 0:
            raise self._empty_error()
        return [marginalise(tables, w) for w in wanted]

    def _raise_on_rejects(self, grouped: dict[tuple[int, ...], Grouped]) -> None:
        for j, column in enumerate(self._columns()):
            group = next(g for g in grouped if j in g)
            codes, counts = grouped[group]
            n_bad = int(counts[codes[:, group.index(j)] == REJECT].sum())
            if n_bad:
                raise self._reject_error(column, n_bad)

    def _scatter(self, group: tuple[int, ...], codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        shape = tuple(self.domain.shape[j] for j in group)
        if (codes < 0).any() or (codes >= np.asarray(shape, dtype=np.int64)).any():
            raise DataError(f"{self.name}: rejected values appeared between queries; did the data change?")
        table = np.zeros(shape, dtype=np.int64)
        np.add.at(table, tuple(codes.T), counts)
        return table

    def _reject_error(self, column: sql.ColumnSql, n_bad: int) -> DataError:
        where, value, status = self._locate(column)
        reason = sql.STATUS_NAMES[status]
        policy = {sql.MISSING: "missing = reject", sql.UNKNOWN: "unknown_category = reject",
                  sql.BELOW: "out_of_range = reject", sql.ABOVE: "out_of_range = reject",
                  sql.UNCASTABLE: "the column is numerical"}[status]
        return DataError(f"{self.name}: column {column.rule.name!r}, {where}: {reason} value {value!r} is "
                         f"rejected ({policy}); {n_bad} row(s) affected")
