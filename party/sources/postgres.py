"""A PostgreSQL table or view, read in one scan (psycopg 3).

The server computes each column's code with the same SQL as the DuckDB source and streams each row's
codes, packed into BIGINT words, by binary COPY; the party counts every table from them (`columnar`).
Counting brings codes, not raw values, into the party process, and no GROUP BY runs on the server
(`_grouped_counts`). The previous server-side aggregation (`unnest` + GROUP BY) is kept as
`_grouped_counts_on_server` for tests. The session is read-only (`default_transaction_read_only`;
transactions are begun READ ONLY, REPEATABLE READ) and has a `statement_timeout`. PostgreSQL tables have no
row order, so a rejected value is located by its `ctid`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import IsolationLevel, errors
from psycopg import sql as pgsql

from cleanroom.errors import CleanroomError, DataError, NotFound, PreconditionFailed
from party.sources import columnar, sql
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


COPY_MESSAGES_PER_FEED = 1 << 16
BLOCKS_PER_RANGE = 128  # pages per block range: one COPY row of ~10,000 data rows' code words
STREAMS = 2  # sessions reading one table's block ranges at once (one snapshot)
COVER_CELL_BUDGET = 20_000  # cells (levels + 1 per column) of one covering set: bounds the result size


def cover_sets(sets: Sequence[tuple[int, ...]], shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Greedily merge sets into supersets of at most COVER_CELL_BUDGET cells, each covering >= 2 of them.

    E.g. the 105 pairs of 15 benchmark columns become 37 triples and quadruples: 37 keys per row, not 105.
    """
    radices = [size + 1 for size in shape]  # + 1: the REJECT code
    return columnar.cover_sets(sets, radices, COVER_CELL_BUDGET, min_sets=2)


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
    """A table or view in PostgreSQL, queried read-only; its codes are streamed and counted in the party."""

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
        self._dsn = dsn
        self._conn = self._connect()
        self._qualified: str | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        """A read-only session with the statement timeout; transactions are READ ONLY, REPEATABLE READ."""
        options = f"-c statement_timeout={int(self.statement_timeout_ms)} -c default_transaction_read_only=on"
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, options=options, connect_timeout=10,
                application_name="cleanroom-party",
            )  # fmt: skip
        except psycopg.Error as error:
            raise PreconditionFailed(f"{self.name}: cannot connect to PostgreSQL: {error}") from error
        conn.read_only = True
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        return conn

    def _execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._errors(), self._conn.transaction(), self._conn.cursor() as cursor:
            cursor.execute(query.encode(), params) if params else cursor.execute(query.encode())
            return cursor.fetchall()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """PostgreSQL errors as the domain's: timeout and connection failures, then any other query error."""
        try:
            yield
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
        """One scan: the server encodes every row and streams packed code words (binary COPY); the party
        counts every table from them (party/sources/columnar.py). No GROUP BY on the server.

        A plain table on PostgreSQL 14+ is read by block ranges (TID range scans), each range's words sent
        as one array (a few hundred messages instead of one per row), split over STREAMS sessions that share
        one snapshot (`pg_export_snapshot`), so the server encodes on as many cores and the table is read
        once, as of one moment. Anything else (views, partitioned or foreign tables, older servers) streams
        one message per row on one session, which PostgreSQL may run with parallel workers.
        """
        packing = columnar.Packing.for_shape(self.domain.shape)
        counters = [columnar.TableCounter(sets, packing.radices) for _ in range(STREAMS)]
        with self._errors(), self._conn.transaction(), self._conn.cursor() as cursor:
            blocks = self._block_count(cursor)  # first statement: it takes the snapshot every stream reads
            if blocks is None:
                self._stream(cursor, self._words_query(packing, None), packing, counters[0])
                return counters[0].grouped()
            last = blocks // BLOCKS_PER_RANGE
            splits = [round(i * (last + 1) / STREAMS) for i in range(STREAMS + 1)]
            ranges = [(lo, hi - 1, hi - 1 == last) for lo, hi in itertools.pairwise(splits) if hi > lo]
            exported = cursor.execute("SELECT pg_export_snapshot()").fetchone()
            assert exported is not None
            snapshot = str(exported[0])
            with ThreadPoolExecutor(len(ranges) - 1 or 1) as pool:
                others = [
                    pool.submit(self._stream_in_snapshot, snapshot, self._words_query(packing, r), packing, c)
                    for r, c in zip(ranges[1:], counters[1:], strict=False)
                ]
                self._stream(cursor, self._words_query(packing, ranges[0]), packing, counters[0])
                for future in others:
                    future.result()
        return columnar.TableCounter.merge(counters[: len(ranges)]).grouped()

    def _stream_in_snapshot(
        self, snapshot: str, query: str, packing: columnar.Packing, counter: columnar.TableCounter
    ) -> None:
        """Run one stream on a session of its own, reading the snapshot the main session exported."""
        with self._errors(), closing(self._connect()) as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(pgsql.Literal(snapshot)))
            self._stream(cursor, query, packing, counter)

    @staticmethod
    def _stream(cursor: Any, query: str, packing: columnar.Packing, counter: columnar.TableCounter) -> None:
        arrays = "array_agg" in query
        reader = (columnar.BinaryArrayCopyReader if arrays else columnar.BinaryCopyReader)(len(packing.words))
        with cursor.copy(query.encode()) as copy:
            pieces: list[Any] = []  # per-row messages are joined by the thousand before parsing
            for data in copy:
                pieces.append(data)
                if arrays or len(pieces) == COPY_MESSAGES_PER_FEED:
                    for words in reader.feed(b"".join(pieces)):
                        counter.add(packing.unpack(words))
                    pieces.clear()
            for words in itertools.chain(reader.feed(b"".join(pieces)), reader.finish()):
                counter.add(packing.unpack(words))

    @contextmanager
    def transaction_cursor(self) -> Iterator[Any]:
        """A cursor in a read-only REPEATABLE READ transaction (tests inspect the plan choice with it)."""
        with self._errors(), self._conn.transaction(), self._conn.cursor() as cursor:
            yield cursor

    def _block_count(self, cursor: Any) -> int | None:
        """Pages of the relation if it can be read by block ranges (a plain table, PostgreSQL 14+)."""
        cursor.execute(
            "SELECT current_setting('server_version_num')::int, c.relkind, "
            "pg_relation_size(c.oid) / current_setting('block_size')::int "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            (self._relation(),),
        )
        version, kind, blocks = cursor.fetchone()
        return int(blocks) if version >= 140000 and kind in ("r", "m") else None

    def _words_query(self, packing: columnar.Packing, ranges: tuple[int, int, bool] | None) -> str:
        """COPY of the code words: per row, or (`ranges` = first, last block range, open-ended) per block
        range as one array per word; the open-ended last range reads to the end (nothing can be missed)."""
        relation = self._relation()
        if ranges is not None:
            upper = f"format('(%s,0)', (b + 1) * {BLOCKS_PER_RANGE})::tid"
            if ranges[2]:
                upper = f"CASE WHEN b = {ranges[1]} THEN '(4294967295,0)'::tid ELSE {upper} END"
            relation = (
                f"(SELECT * FROM {relation} WHERE ctid >= format('(%s,0)', b * {BLOCKS_PER_RANGE})::tid "
                f"AND ctid < {upper}) AS part"
            )
        # no OFFSET fences: each code is used once (in its word); the server may encode in parallel workers
        codes = f"({sql.encode_query(relation, self._columns(), fence=False)}) AS enc"
        words = f"SELECT {packing.select_list()} FROM {codes}"
        if ranges is not None:
            arrays = ", ".join(f"array_agg(w{i})" for i in range(len(packing.words)))
            words = (
                f"SELECT x.* FROM generate_series({ranges[0]}, {ranges[1]}) AS b, "
                f"LATERAL (SELECT {arrays} FROM ({words}) AS w) AS x"
            )
        return f"COPY ({words}) TO STDOUT (FORMAT BINARY)"

    def _grouped_counts_on_server(self, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
        """The same counts aggregated by the server (unnest + GROUP BY); kept to cross-check the stream."""
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
