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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _canonical_positions(self, clique: Sequence[str]) -> tuple[int, ...]:
        unknown = [a for a in clique if a not in self.domain]
        if unknown:
            raise SchemaError(
                f"{self.name}: clique {tuple(clique)} names columns {unknown} that are not "
                f"measured columns of the schema"
            )
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


def report_from_counts(name: str, columns: Sequence[sql.ColumnSql], counts: Sequence[int]) -> dict[str, Any]:
    """Turn report_query's flat counts into the local validation report (counts only, no data values).

    Same shape as `cleanroom.encoding.EncodingReport.to_dict()`, plus per-column `rejected` (values the
    policy rejects) and a top-level `ok`.
    """
    statuses = sorted(sql.STATUS_NAMES)
    report: dict[str, Any] = {}
    for j, column in enumerate(columns):
        start = 1 + j * len(statuses)
        per_status = dict(zip(statuses, counts[start : start + len(statuses)], strict=True))
        report[column.rule.name] = column_report(column, per_status)
    ok = counts[0] > 0 and not any(entry["rejected"] for entry in report.values())
    return {"source": name, "rows": int(counts[0]), "ok": bool(ok), "columns": report}


def column_report(column: sql.ColumnSql, per_status: dict[int, int]) -> dict[str, int]:
    rule = column.rule
    rejected = {s for group in column.rejected_statuses() for s in group}
    kept = {s: int(n) for s, n in per_status.items() if s not in rejected}
    policy = rule.unknown_category if rule.kind == "categorical" else rule.out_of_range
    changed = kept.get(sql.UNKNOWN, 0) + kept.get(sql.BELOW, 0) + kept.get(sql.ABOVE, 0)
    return {
        "clipped": changed if policy == "clip" else 0,
        "other": changed if policy == "other" else 0,
        "missing_mapped": changed if policy == "missing" else 0,
        "missing": kept.get(sql.MISSING, 0),
        "rejected": int(sum(per_status.get(s, 0) for s in rejected)),
    }


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
    def _locate(self, column: sql.ColumnSql, statuses: tuple[int, ...]) -> tuple[str, Any, int]:
        """(where, raw value, status) of the first row whose value has one of `statuses`."""

    def check_schema(self) -> None:
        self._columns()

    def _columns(self) -> tuple[sql.ColumnSql, ...]:
        if self._column_sql is None:
            types = self._describe()
            for name in self.rules.names:  # identifier columns need not exist
                if name not in types:
                    raise missing_column_error(self.name, name, list(types))
            self._column_sql = tuple(self._column_of(rule, types[rule.name]) for rule in self.rules.columns)
        return self._column_sql

    def _present_identifiers(self) -> list[str]:
        types = self._describe()
        return [name for name in self.rules.identifiers if name in types]

    def _column_of(self, rule: Any, sql_type: str) -> sql.ColumnSql:
        family = sql.type_family(sql_type)
        if rule.kind == "numerical" and family not in ("numeric", "float", "text"):
            raise SchemaError(
                f"{self.name}: column {rule.name!r} has type {sql_type}, which cannot be cast to "
                f"a number for a numerical column"
            )
        return sql.ColumnSql(rule, sql_type, self.dialect)

    def row_count(self) -> int:
        self._columns()
        return int(self._fetch(sql.row_count_query(self._relation()))[0][0])

    def validation_report(self) -> dict[str, Any]:
        counts = self._fetch(sql.report_query(self._relation(), self._columns()))[0]
        return report_from_counts(self.name, self._columns(), [int(c) for c in counts])

    @abstractmethod
    def _grouped_counts(self, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
        """For each set of column positions: the distinct code combinations (REJECT included) and counts."""

    def _first_rejected(
        self, numbered: str, row_column: str, column: sql.ColumnSql, statuses: tuple[int, ...], where: str
    ) -> tuple[Any, Any, int]:
        """(row number, value, status) of the first row of `numbered` (the relation with a `row_column`)
        whose `column` has one of `statuses`; `where` names what may have changed if there is none."""
        wanted = ", ".join(str(s) for s in statuses)
        rows = self._fetch(
            f"SELECT {row_column}, {column.ident}, {column.status()} AS status FROM {numbered} "
            f"WHERE ({column.status()}) IN ({wanted}) ORDER BY {row_column} LIMIT 1"
        )
        if not rows:
            raise DataError(
                f"{self.name}: column {column.rule.name!r}: rejected values vanished; did the {where} "
                f"change during the job?",
                column.rule.name,
            )
        row, value, status = rows[0]
        return row, value, int(status)

    def _grouping_sets_counts(self, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
        """`_grouped_counts` by SQL GROUPING SETS over the codes relation, MAX_SETS_PER_QUERY sets a query."""
        n_columns, out = len(self._columns()), {}
        for start in range(0, len(sets), MAX_SETS_PER_QUERY):
            chunk = sets[start : start + MAX_SETS_PER_QUERY]
            rows = self._fetch(sql.grouping_sets_query(self._codes_relation(), n_columns, chunk))
            out.update(
                split_grouping_rows(np.asarray(rows, dtype=np.int64).reshape(-1, n_columns + 1), chunk)
            )
        return out

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
        """The DataError cleanroom.encoding would raise: first check that fails, its first row and value."""
        rows = self._fetch(sql.rejected_counts_query(self._relation(), column))
        per_status = {int(status): int(n) for status, n in rows}
        for group in column.rejected_statuses():
            n_group = sum(per_status.get(s, 0) for s in group)
            if n_group:
                where, value, status = self._locate(column, group)
                return DataError(
                    f"{self.name}: column {column.rule.name!r}, {where}: "
                    f"{column.rejection_text(status)} {value!r} ({n_group} such rows)",
                    column.rule.name,
                )
        return DataError(
            f"{self.name}: column {column.rule.name!r}: {n_bad} rejected values vanished; did the "
            f"data change during the job?",
            column.rule.name,
        )
