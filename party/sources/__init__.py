"""Party data sources: compute marginal count tables where the data already lives.

`open_source(spec, schema)` returns a `DataSource` for a CSV or Parquet file (embedded DuckDB), a
PostgreSQL table or view (server-side encoding, read-only), a Spark table or files (counted by Spark,
local mode or a cluster) or an in-memory pandas frame (tests, small data). All of them produce the same
int64 tables as `cleanroom.marginals.count_table` on `cleanroom.encoding.encode`'s codes. See docs/sources.md.
"""

from __future__ import annotations

from typing import Any

from party.sources.base import DataSource
from party.sources.rules import SchemaRules, rules_from_schema
from party.sources.spec import SourceSpec

__all__ = ["DataSource", "SchemaRules", "SourceSpec", "open_source"]


def open_source(spec: SourceSpec, schema: Any) -> DataSource:
    """Open (and connect to) the source described by `spec`; call `check_schema()` before counting."""
    rules = rules_from_schema(schema)
    if spec.kind in ("csv", "parquet", "duckdb"):
        from party.sources.duck import DuckDbSource

        assert spec.path is not None
        return DuckDbSource(
            spec.kind, spec.path, schema, rules, delimiter=spec.delimiter, table=spec.table, name=spec.name
        )
    if spec.kind == "postgresql":
        from party.sources.postgres import PostgresSource

        assert spec.dsn is not None and spec.table is not None
        return PostgresSource(
            spec.dsn,
            spec.table,
            schema,
            rules,
            statement_timeout_ms=spec.statement_timeout_ms,
            name=spec.name,
        )
    if spec.kind == "spark":
        from party.sources.spark import SparkSource  # imports pyspark only when a session is opened

        assert spec.spark is not None
        return SparkSource(spec.spark, schema, rules, name=spec.name)
    from party.sources.frame import FrameSource

    assert spec.frame is not None
    return FrameSource(spec.frame, schema, rules, name=spec.name or "frame")
