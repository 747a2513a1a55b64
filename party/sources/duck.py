"""CSV and Parquet files queried in place by an embedded DuckDB.

The file is never loaded into Python: DuckDB streams it once, computes every column's code in SQL into a
compact temporary table of small integers (spilled to disk beyond the memory limit), and then aggregates all
requested tables with GROUPING SETS over those codes. CSV files are read with every column as text so
that casting, missing values and the first offending row are under our control. Row numbers in errors are
0-based data rows (the first row after the CSV header is row 0, i.e. line 2 of the file).
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from cleanroom.errors import DataError, NotFound
from party.sources import sql
from party.sources.base import Grouped, SqlSource
from party.sources.rules import SchemaRules

ROW_COLUMN = "__cleanroom_row"
CODES_TABLE = "cleanroom_codes"
DATABASE = "party_data"  # alias of an attached DuckDB database file (kind "duckdb")
DEFAULT_THREADS = 2
DEFAULT_MEMORY_LIMIT = "1GB"


def one_line(error: Exception) -> str:
    """DuckDB's first message line and the line naming the column, never its multi-line reader dump."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    detail = next((line for line in lines[1:] if line.startswith("Error when converting")), "")
    return f"{lines[0]} {detail}".strip()


class DuckDbSource(SqlSource):
    """A CSV or Parquet file (a single file) read through DuckDB."""

    dialect = sql.Dialect("duckdb")

    def __init__(
        self,
        kind: str,
        path: Path,
        schema: Any,
        rules: SchemaRules,
        *,
        delimiter: str = ",",
        table: str | None = None,
        name: str | None = None,
        threads: int = DEFAULT_THREADS,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        default_name = f"{kind} file {path}" + (f" table {table}" if kind == "duckdb" else "")
        super().__init__(name or default_name, schema, rules)
        if not path.is_file():
            raise NotFound(f"{self.name}: the data file {path} does not exist")
        if kind == "csv" and path.stat().st_size == 0:
            raise DataError(f"{self.name}: the data file {path} is empty (no header line)")
        self.kind, self.path, self.delimiter = kind, path, delimiter
        self._spill = tempfile.TemporaryDirectory(prefix="cleanroom-duckdb-")
        self._con = duckdb.connect(
            ":memory:",
            config={
                "threads": threads,
                "memory_limit": memory_limit,
                "preserve_insertion_order": True,
                "temp_directory": self._spill.name,
            },
        )
        self._codes_ready = False
        self.table = table
        if kind == "duckdb":
            self._run(f"ATTACH {sql.quote_literal(str(path))} AS {DATABASE} (READ_ONLY)")

    def _relation(self) -> str:
        location = sql.quote_literal(str(self.path))
        if self.kind == "duckdb":
            assert self.table is not None
            return ".".join([DATABASE, *(sql.quote_ident(part) for part in self.table.split("."))])
        if self.kind == "parquet":
            return f"read_parquet({location})"
        return (
            f"read_csv({location}, header = true, all_varchar = true, auto_detect = false, "
            f"delim = {sql.quote_literal(self.delimiter)}, quote = '\"', escape = '\"', "
            f"columns = {self._csv_columns()})"
        )

    def _csv_columns(self) -> str:
        names = self._header()
        return "{" + ", ".join(f"{sql.quote_literal(n)}: 'VARCHAR'" for n in names) + "}"

    def _header(self) -> list[str]:
        """Column names from the CSV header line (read directly: DuckDB's sniffer may guess otherwise)."""
        if not hasattr(self, "_header_names"):
            with open(self.path, newline="", encoding="utf-8-sig") as handle:
                first = next(csv.reader(handle, delimiter=self.delimiter), [])
            if not first:
                raise DataError(f"{self.name}: the first line of {self.path} is not a header")
            self._header_names = first
        return self._header_names

    def _run(self, query: str) -> duckdb.DuckDBPyConnection:
        try:
            return self._con.execute(query)
        except duckdb.CatalogException as error:
            raise NotFound(f"{self.name}: {one_line(error)}") from None
        except duckdb.IOException as error:
            raise DataError(f"{self.name}: cannot read the file: {one_line(error)}") from None
        except duckdb.Error as error:
            raise DataError(f"{self.name}: query failed: {one_line(error)}") from None

    def _codes_relation(self) -> str:
        """Codes of every row, materialised once per source (one scan of the file) in a temp table."""
        if not self._codes_ready:
            encode = sql.encode_query(self._relation(), self._columns())
            self._run("SET preserve_insertion_order = false")  # row order of the codes is irrelevant
            try:
                self._run(f"CREATE TEMP TABLE {CODES_TABLE} AS {encode}")
            finally:
                self._run("SET preserve_insertion_order = true")  # _locate numbers rows in file order
            self._codes_ready = True
        return CODES_TABLE

    def _grouped_counts(self, sets: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], Grouped]:
        return self._grouping_sets_counts(sets)

    def _fetch(self, query: str) -> list[tuple[Any, ...]]:
        return self._run(query).fetchall()

    def _describe(self) -> dict[str, str]:
        if self.kind == "csv":
            return dict.fromkeys(self._header(), "VARCHAR")
        rows = self._fetch(f"DESCRIBE SELECT * FROM {self._relation()}")
        return {str(r[0]): str(r[1]) for r in rows}

    def _locate(self, column: sql.ColumnSql, statuses: tuple[int, ...]) -> tuple[str, Any, int]:
        numbered = f"(SELECT row_number() OVER () - 1 AS {ROW_COLUMN}, * FROM {self._relation()}) AS numbered"
        row, value, status = self._first_rejected(numbered, ROW_COLUMN, column, statuses, "file")
        where = (
            f"row {row} (0-based data row; line {row + 2} of the file)"
            if self.kind == "csv"
            else f"row {row} (0-based row of the {'Parquet file' if self.kind == 'parquet' else 'table'})"
        )
        return where, value, status

    def read_frame(self) -> pd.DataFrame:
        """Columns as stored: numbers kept as text stay text, so `cleanroom.encoding` applies the schema's
        policy to them (a TRY_CAST here would be pushed into DuckDB's CSV reader and fail on any text)."""
        parts = [column.ident for column in self._columns()]
        parts += [sql.quote_ident(n) for n in self._present_identifiers()]
        return self._run(f"SELECT {', '.join(parts)} FROM {self._relation()}").df()

    def close(self) -> None:
        self._con.close()
        self._spill.cleanup()
