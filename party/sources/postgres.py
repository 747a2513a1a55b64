"""A PostgreSQL table or view, aggregated on the server (psycopg 3).

Only aggregates travel back: the server computes each column's code with the same SQL as the DuckDB source
and counts one packed cell key per requested table per row (`unnest` + GROUP BY, one scan). The session is
read-only (`default_transaction_read_only`; transactions are begun READ ONLY, REPEATABLE READ) and has a
`statement_timeout`. PostgreSQL tables have no row order, so a rejected value is located by its `ctid`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import IsolationLevel, errors

from cleanroom.errors import CleanroomError, DataError, NotFound, PreconditionFailed
from party.sources import sql
from party.sources.base import MAX_SETS_PER_QUERY, Grouped, SqlSource
from party.sources.rules import SchemaRules


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for names and messages."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://<unparsable url>"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def unpack_keys(
    keys: np.ndarray, counts: np.ndarray, sets: Sequence[tuple[int, ...]], shape: Sequence[int]
) -> dict[tuple[int, ...], Grouped]:
    """Invert sql.unnest_counts_query's packed keys into (codes, counts) per set."""
    offsets = np.asarray(sql.cell_offsets(sets, shape), dtype=np.int64)
    which = np.searchsorted(offsets, keys, side="right") - 1
    out: dict[tuple[int, ...], Grouped] = {}
    for index, group in enumerate(sets):
        mine = which == index
        local = keys[mine] - offsets[index]
        radices = tuple(shape[j] + 1 for j in group)
        codes = np.stack(np.unravel_index(local, radices), axis=1) - 1 if group else np.zeros((len(local), 0))
        out[group] = (codes.astype(np.int64), counts[mine])
    return out


COVER_CELL_BUDGET = 20_000  # cells (levels + 1 per column) of one covering set: bounds the result size


def cover_sets(sets: Sequence[tuple[int, ...]], shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Greedily merge sets into supersets of at most COVER_CELL_BUDGET cells, each covering >= 2 of them.

    E.g. the 105 pairs of 15 benchmark columns become 37 triples and quadruples: 37 keys per row, not 105.
    """
    remaining = [frozenset(s) for s in dict.fromkeys(sets)]
    covers: list[tuple[int, ...]] = []
    while remaining:
        cover = set(remaining[0])
        while True:
            best, gain = None, 1
            for column in range(len(shape)):
                trial = cover | {column}
                if column in cover or np.prod([shape[j] + 1 for j in trial]) > COVER_CELL_BUDGET:
                    continue
                newly = sum(1 for s in remaining if s <= trial and not s <= cover)
                if newly > gain:
                    best, gain = column, newly
            if best is None:
                break
            cover.add(best)
        covers.append(tuple(sorted(cover)))
        remaining = [s for s in remaining if not s <= cover]
    return covers


def sub_grouped(covered: dict[tuple[int, ...], Grouped], group: tuple[int, ...]) -> Grouped:
    """(codes, counts) of `group` summed out of a computed superset (REJECT codes kept as they are)."""
    source = next(g for g in covered if set(group) <= set(g))
    codes, counts = covered[source]
    if source == group:
        return codes, counts
    picked = codes[:, [source.index(j) for j in group]]
    unique, inverse = np.unique(picked, axis=0, return_inverse=True)
    return unique.astype(np.int64), np.bincount(
        inverse.ravel(), weights=counts, minlength=len(unique)
    ).astype(np.int64)


class PostgresSource(SqlSource):
    """A table or view in PostgreSQL, queried read-only with server-side aggregation."""

    dialect = sql.Dialect("postgresql")

    def __init__(
        self,
        dsn: str,
        table: str,
        schema: Any,
        rules: SchemaRules,
        *,
        statement_timeout_ms: int,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"{describe_dsn(dsn)} table {table}", schema, rules)
        self.table, self.statement_timeout_ms = table, statement_timeout_ms
        options = f"-c statement_timeout={int(statement_timeout_ms)} -c default_transaction_read_only=on"
        try:
            self._conn = psycopg.connect(
                dsn, autocommit=True, options=options, connect_timeout=10, application_name="cleanroom-party"
            )
        except psycopg.Error as error:
            raise PreconditionFailed(f"{self.name}: cannot connect to PostgreSQL: {error}") from error
        self._conn.read_only = True
        self._conn.isolation_level = IsolationLevel.REPEATABLE_READ
        self._qualified: str | None = None

    def _execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._conn.transaction(), self._conn.cursor() as cursor:
                cursor.execute(query.encode(), params) if params else cursor.execute(query.encode())
                return cursor.fetchall()
        except errors.QueryCanceled as error:
            raise PreconditionFailed(
                f"{self.name}: query cancelled after the statement timeout "
                f"({self.statement_timeout_ms} ms): {error}"
            ) from error
        except psycopg.OperationalError as error:
            raise PreconditionFailed(f"{self.name}: PostgreSQL connection failed: {error}") from error
        except psycopg.Error as error:
            raise DataError(f"{self.name}: query failed: {error}") from error

    def _codes_relation(self) -> str:
        # OFFSET 0 keeps the planner from inlining every column's CASE into every key that uses it.
        return f"({sql.encode_query(self._relation(), self._columns())} OFFSET 0) AS enc"

    def _grouped_counts(self, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
        shape, covered = self.domain.shape, {}
        covers = cover_sets(sets, shape)  # fewer, larger sets: fewer keys per row for the server to count
        for start in range(0, len(covers), MAX_SETS_PER_QUERY):
            chunk = covers[start : start + MAX_SETS_PER_QUERY]
            rows = self._execute(sql.unnest_counts_query(self._codes_relation(), chunk, shape))
            keys_counts = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
            covered.update(unpack_keys(keys_counts[:, 0], keys_counts[:, 1], chunk, shape))
        return {group: sub_grouped(covered, group) for group in sets}

    def _fetch(self, query: str) -> list[tuple[Any, ...]]:
        return self._execute(query)

    def _relation(self) -> str:
        if self._qualified is None:
            rows = self._execute("SELECT CAST(to_regclass(%s) AS text)", (self.table,))
            if rows[0][0] is None:
                raise NotFound(
                    f"{self.name}: table or view {self.table!r} does not exist (or is not visible)"
                )
            self._qualified = str(rows[0][0])
        return self._qualified

    def _describe(self) -> dict[str, str]:
        rows = self._execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (self._relation(),),
        )
        return {str(name): str(kind) for name, kind in rows}

    def _locate(self, column: sql.ColumnSql, statuses: tuple[int, ...]) -> tuple[str, Any, int]:
        wanted = ", ".join(str(s) for s in statuses)
        rows = self._execute(
            f"SELECT CAST(ctid AS text), {column.ident}, {column.status()} "
            f"FROM {self._relation()} WHERE ({column.status()}) IN ({wanted}) LIMIT 1"
        )
        if not rows:
            raise DataError(
                f"{self.name}: column {column.rule.name!r}: rejected values vanished; did the "
                f"table change during the job?"
            )
        ctid, value, status = rows[0]
        return f"row with ctid {ctid} (PostgreSQL tables have no row order)", value, int(status)

    def read_frame(self) -> pd.DataFrame:
        parts = []
        for column in self._columns():
            family = sql.type_family(column.sql_type)
            if column.rule.kind == "numerical" and family == "text":
                parts.append(f"{self.dialect.text_to_double(column.ident)} AS {column.ident}")
            elif column.rule.kind == "numerical":
                parts.append(f"CAST({column.ident} AS DOUBLE PRECISION) AS {column.ident}")
            else:
                parts.append(column.ident)
        names = [*self.rules.names, *self._present_identifiers()]
        parts += [sql.quote_ident(n) for n in self._present_identifiers()]
        rows = self._execute(f"SELECT {', '.join(parts)} FROM {self._relation()}")
        return pd.DataFrame.from_records(rows, columns=names)

    def close(self) -> None:
        try:
            self._conn.close()
        except psycopg.Error as error:  # closing must not mask the error that led here
            raise CleanroomError(f"{self.name}: closing the connection failed: {error}") from error
