"""A table in Spark (a catalog/lakehouse table, or Parquet/Delta/CSV/ORC files a cluster reads), counted where
it lives through PySpark.

The same push-down as the DuckDB and PostgreSQL sources, in Spark SQL: every measured column becomes a small
integer code (`sql.encode_query` with the Spark dialect below), the codes are cached on the executors for the
life of the source, and all requested tables are counted in one `GROUPING SETS` aggregation (one Spark job per
128 sets). Only the marginal tables (and, for a rejected value, the one row's value and position, for the
local operator) come back to the party process; no Python runs on the executors. Spark tables have no fixed
row order: a rejected value is located by its position in the order Spark reads the data
(`monotonically_increasing_id`), which for a single file is its row number.

pyspark is imported only when a Spark source is opened (`pip install "cleanroom[spark]"`; Java 17). The
master is `local[*]` (the party's machine), `spark://host:7077` (a standalone cluster) or `sc://...` (Spark
Connect, including Databricks Connect). See docs/sources.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cleanroom.errors import CleanroomError, DataError, NotFound, PreconditionFailed
from party.sources import sql
from party.sources.base import (
    MAX_SETS_PER_QUERY,
    Grouped,
    SqlSource,
    report_from_counts,
)
from party.sources.postgres import cover_sets, sub_grouped, unpack_keys
from party.sources.rules import SchemaRules
from party.sources.spec import SparkSettings, describe_master

ROW_ID = "__cleanroom_row_id"
# Applied to a session this source starts itself (not over Spark Connect, where they are the server's).
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
# A local master runs the executors in the driver's JVM. Spark's generated code for 15 encoded columns has
# per-row methods over HotSpot's 8000-byte JIT limit; left interpreted, encoding ran 3-4x slower.
LOCAL_JVM_OPTIONS = {"spark.driver.extraJavaOptions": "-XX:-DontCompileHugeMethods"}
_TYPE_NAMES = {  # Spark's simple type names -> the names sql.type_family knows
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "varchar": "VARCHAR",
    "char": "VARCHAR",
    "boolean": "BOOLEAN",
}
_NOT_FOUND = ("TABLE_OR_VIEW_NOT_FOUND", "PATH_NOT_FOUND", "SCHEMA_NOT_FOUND")


@dataclass(frozen=True)
class SparkDialect(sql.Dialect):
    """Spark SQL: backquoted names, backslash-escaped literals, DOUBLE/STRING, no NULL from array_position."""

    name: str = "spark"

    def ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def literal(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"  # 'a''b' would concatenate

    def double_type(self) -> str:
        return "DOUBLE"

    def text_type(self) -> str:
        return "STRING"

    def is_nan(self, expr: str) -> str:
        return f"isnan({expr})"

    def list_position(self, values: Sequence[str], expr: str) -> str:
        items = ", ".join(self.literal(v) for v in values)
        return f"NULLIF(array_position(array({items}), {expr}), 0)"

    def castable(self, expr: str) -> str:
        # Spark's cast also takes '1d' and hex floats; the PostgreSQL number syntax keeps all sources alike
        return f"({expr} RLIKE {self.literal('(?i)' + sql._PG_NUMBER_RE)})"

    def text_to_double(self, expr: str) -> str:
        return f"(CASE WHEN {self.castable(expr)} THEN TRY_CAST({expr} AS DOUBLE) END)"

    def uncastable(self, expr: str, value: str, blank: str) -> str:
        return f"({value} IS NULL AND NOT {blank})"

    def bin_index(self, value: str, edges: Sequence[float]) -> str:
        """A balanced CASE tree over the interior edges: log2(bins) comparisons per value."""
        return self._edges_at_or_below(value, list(edges[1:-1]), 0)

    def _edges_at_or_below(self, value: str, edges: list[float], base: int) -> str:
        if not edges:
            return str(base)
        mid = len(edges) // 2
        above = self._edges_at_or_below(value, edges[mid + 1 :], base + mid + 1)
        below = self._edges_at_or_below(value, edges[:mid], base)
        return f"CASE WHEN {value} >= {self.double(edges[mid])} THEN {above} ELSE {below} END"

    def is_blank(self, expr: str) -> str:
        """NULL or whitespace only; a first byte in '!'..'}' (printable ASCII, compared bytewise) decides at
        once, without the per-row string that ascii() builds."""
        return (
            f"(CASE WHEN {expr} IS NULL THEN true WHEN {expr} >= '!' AND {expr} < '~' THEN false "
            f"ELSE btrim({expr}, {self.literal(sql._WHITESPACE)}) = '' END)"
        )

    def float_as_text(self, expr: str) -> str:
        return (
            f"(CASE WHEN abs({expr}) < 9e18 AND {expr} = floor({expr}) "
            f"THEN CAST(CAST({expr} AS BIGINT) AS STRING) ELSE CAST({expr} AS STRING) END)"
        )


def type_name(spark_type: str) -> str:
    """A Spark column type (`df.dtypes`) as the SQL type name sql.type_family classifies."""
    base = spark_type.split("(")[0].strip().lower()
    if base == "decimal":
        return spark_type.upper()
    return _TYPE_NAMES.get(base, spark_type.upper())


def first_line(error: BaseException) -> str:
    """The error's first informative line (py4j puts "An error occurred while calling o85.x." first)."""
    lines = [line.strip().lstrip(": ") for line in str(error).strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith("An error occurred while calling")]
    return lines[0][:400] if lines else type(error).__name__


def open_session(settings: SparkSettings, source_name: str) -> tuple[Any, bool]:
    """(session, whether this call started it); getOrCreate joins a session the process already has."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise PreconditionFailed(
            f'{source_name}: a spark source needs pyspark (pip install "cleanroom[spark]") and Java 17'
        ) from error
    started = SparkSession.getActiveSession() is None
    builder = SparkSession.builder
    if settings.remote:
        builder = builder.remote(settings.master)
        confs = dict(settings.conf)
    else:
        builder = builder.master(settings.master).appName("cleanroom-party")
        local = settings.master.startswith("local")
        confs = {**LOCAL_DEFAULTS, **(LOCAL_JVM_OPTIONS if local else {}), **dict(settings.conf)}
    for key, value in confs.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate(), started
    except Exception as error:  # no Java, an unreachable cluster, a refused token: all before any data
        raise PreconditionFailed(
            f"{source_name}: cannot start a Spark session on {describe_master(settings.master)}: "
            f"{first_line(error)}"
        ) from error


class SparkSource(SqlSource):
    """A Spark table or files read by Spark; codes and counts are computed by Spark, tables come back."""

    dialect = SparkDialect()

    def __init__(
        self,
        settings: SparkSettings,
        schema: Any,
        rules: SchemaRules,
        *,
        name: str | None = None,
        session: Any = None,
    ) -> None:
        what = f"table {settings.table}" if settings.table else f"{settings.format} {settings.location}"
        super().__init__(name or f"spark {what} ({describe_master(settings.master)})", schema, rules)
        self.settings = settings
        self._session, self._owns_session = (
            (session, False) if session is not None else open_session(settings, self.name)
        )
        self._view = f"cleanroom_data_{uuid.uuid4().hex[:12]}"
        self._codes_view: str | None = None
        self._codes: Any = None
        self._types: dict[str, str] | None = None
        try:
            with self._errors():
                self._reader().createOrReplaceTempView(self._view)
        except CleanroomError:
            if self._owns_session:
                self._session.stop()
            raise

    def _reader(self) -> Any:
        """The source DataFrame: a catalog table, or files (CSV read as text, like the DuckDB source)."""
        settings = self.settings
        if settings.table is not None:
            return self._session.table(settings.table)
        reader = self._session.read.format(settings.format)
        if settings.format == "csv":
            # without column pruning every line is tokenized whole, so FAILFAST sees a ragged line
            self._session.conf.set("spark.sql.csv.parser.columnPruning.enabled", "false")
            reader = reader.options(
                header="true", inferSchema="false", sep=settings.delimiter, quote='"', escape='"',
                mode="FAILFAST", multiLine="false",
            )  # fmt: skip
        return reader.load(settings.location)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Spark's errors as the domain's: missing table or path, lost cluster, then any failed query."""
        try:
            yield
        except CleanroomError:
            raise
        except Exception as error:
            error_class = getattr(error, "getErrorClass", lambda: None)()
            if error_class in _NOT_FOUND:
                raise NotFound(f"{self.name}: {first_line(error)}") from error
            if "Connect" in type(error).__name__ or "Py4JNetworkError" in type(error).__name__:
                message = f"{self.name}: lost the Spark session: {first_line(error)}"
                raise PreconditionFailed(message) from error
            raise DataError(f"{self.name}: Spark query failed: {first_line(error)}") from error

    def _fetch(self, query: str) -> list[tuple[Any, ...]]:
        with self._errors():
            return [tuple(row) for row in self._session.sql(query).collect()]

    def _relation(self) -> str:
        return self.dialect.ident(self._view)

    def _describe(self) -> dict[str, str]:
        if self._types is None:
            with self._errors():
                dtypes = self._session.table(self._view).dtypes
            self._types = {str(name): type_name(str(kind)) for name, kind in dtypes}
        return self._types

    def _codes_relation(self) -> str:
        """The codes of every row, computed by Spark and cached on its executors for the source's life."""
        if self._codes_view is None:
            with self._errors():
                encode = sql.encode_query(self._relation(), self._columns(), fence=False)
                self._codes = self._session.sql(encode).persist()
                view = f"{self._view}_codes"
                self._codes.createOrReplaceTempView(view)
            self._codes_view = view
        return self.dialect.ident(self._codes_view)

    def _grouped_counts(self, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
        """One Spark job per 128 covering sets: each row emits one packed key per covering set (`explode`),
        Spark counts the keys (a hash aggregate on one BIGINT), and the party sums the requested tables out
        of the covers. It gives the GROUPING SETS tables (`_grouped_counts_by_grouping_sets`, kept for the
        tests) at a fraction of the cost: Spark's GROUPING SETS copies every row once per set (Expand) and
        hashes all columns of each copy."""
        shape, covered = self.domain.shape, {}
        covers = cover_sets(sets, shape)
        for start in range(0, len(covers), MAX_SETS_PER_QUERY):
            chunk = covers[start : start + MAX_SETS_PER_QUERY]
            rows = self._fetch(packed_counts_query(self._codes_relation(), chunk, shape))
            keys_counts = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
            covered.update(unpack_keys(keys_counts[:, 0], keys_counts[:, 1], chunk, shape))
        return {group: sub_grouped(covered, group) for group in sets}

    def _grouped_counts_by_grouping_sets(
        self, sets: Sequence[tuple[int, ...]]
    ) -> dict[tuple[int, ...], Grouped]:
        """The same counts from Spark's GROUPING SETS (one job per 128 sets)."""
        return self._grouping_sets_counts(sets)

    def validation_report(self) -> dict[str, Any]:
        # no OFFSET fence: Spark computes each shared piece once anyway, and OFFSET would gather one partition
        counts = self._fetch(sql.report_query(self._relation(), self._columns(), fence=False))[0]
        return report_from_counts(self.name, self._columns(), [int(c) for c in counts])

    def _locate(self, column: sql.ColumnSql, statuses: tuple[int, ...]) -> tuple[str, Any, int]:
        """The first offending row in Spark's read order: its id, then how many rows come before it."""
        relation = self._relation()
        numbered = f"(SELECT monotonically_increasing_id() AS {ROW_ID}, * FROM {relation}) AS numbered"
        row_id, value, status = self._first_rejected(numbered, ROW_ID, column, statuses, "data")
        before = self._fetch(f"SELECT count(*) FROM {numbered} WHERE {ROW_ID} < {int(row_id)}")[0][0]
        data = "table" if self.settings.table else "files"
        return f"row {int(before)} (0-based, in the order Spark reads the {data})", value, status

    def read_frame(self) -> pd.DataFrame:
        parts = []
        for column in self._columns():
            if column.rule.kind == "numerical" and sql.type_family(column.sql_type) == "text":
                parts.append(f"{self.dialect.text_to_double(column.ident)} AS {column.ident}")
            elif column.rule.kind == "numerical":
                parts.append(f"CAST({column.ident} AS DOUBLE) AS {column.ident}")
            else:
                parts.append(column.ident)
        identifiers = self._present_identifiers()
        parts += [self.dialect.ident(n) for n in identifiers]
        query = f"SELECT {', '.join(parts)} FROM {self._relation()}"
        with self._errors():
            selected = self._session.sql(query)
            batches = selected._collect_as_arrow() if hasattr(selected, "_collect_as_arrow") else None
            if batches:  # classic PySpark: Arrow record batches, no Python object per row
                return pd.DataFrame(pa.Table.from_batches(batches).to_pandas())
            if batches is None:  # Spark Connect: the client receives Arrow anyway
                return pd.DataFrame(selected.toPandas())
        return pd.DataFrame(columns=[*self.rules.names, *identifiers])

    def close(self) -> None:
        """Drop the views and the cached codes; stop the session if this source started it."""
        with self._errors():
            if self._codes is not None:
                self._codes.unpersist()
                self._session.catalog.dropTempView(self._codes_view)
            self._session.catalog.dropTempView(self._view)
            if self._owns_session:
                self._session.stop()


def packed_counts_query(codes: str, sets: Sequence[tuple[int, ...]], shape: Sequence[int]) -> str:
    """One scan of the codes: every row emits one key per set (`sql.cell_offsets` + mixed-radix codes+1, as
    `sql.unnest_counts_query` does for PostgreSQL); the count of every key."""
    keys = []
    for offset, group in zip(sql.cell_offsets(sets, shape), sets, strict=True):
        packed = "CAST(0 AS BIGINT)"
        for j in group:
            packed = f"({packed}) * {shape[j] + 1} + (c{j} + 1)"
        keys.append(f"{offset} + {packed}")
    return f"SELECT k, count(*) FROM (SELECT explode(array({', '.join(keys)})) AS k FROM {codes}) GROUP BY k"
