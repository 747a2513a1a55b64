"""`SourceSpec`: where a party's data lives, parsed from the `[source]` table of its party.toml.

```toml
[source]
path = "data/customers.parquet"        # kind inferred from the suffix: .parquet/.pq -> parquet, .csv -> csv
# or
url = "postgresql://reader@db.internal:5432/crm"   # or url_env = "CRM_DSN" (password not in the file)
table = "customers"                                 # table or view, optionally schema-qualified
statement_timeout_ms = 300000
# or (party.sources.spark; needs the `spark` extra and Java)
kind = "spark"
table = "sales.customers"                           # a catalog table, or path = "s3a://bucket/customers/"
master = "spark://spark-master:7077"                # local[*] (default), spark://..., or sc://... (Connect)
conf = { "spark.executor.memory" = "4g" }
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cleanroom.errors import InvalidInput

KINDS = ("csv", "parquet", "duckdb", "postgresql", "pandas", "spark")
_SUFFIX_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".duckdb": "duckdb"}
_URL_PREFIXES = ("postgresql://", "postgres://")
_CONFIG_KEYS = {
    "kind",
    "path",
    "url",
    "dsn",
    "url_env",
    "table",
    "statement_timeout_ms",
    "read_only",
    "delimiter",
    "name",
    "master",
    "master_env",
    "conf",
    "format",
}
DEFAULT_TIMEOUT_MS = 600_000
SPARK_FORMATS = ("parquet", "delta", "csv", "orc")
_SPARK_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".orc": "orc"}
SPARK_MASTERS = ("local", "spark://", "sc://", "yarn", "k8s://")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # s3a://..., abfss://..., dbfs:/..., file:/... (not C:)


@dataclass(frozen=True)
class SparkSettings:
    """Where a Spark source's table lives and which Spark runs the queries (see docs/sources.md)."""

    table: str | None = None
    location: str | None = None  # a path or URI the cluster can read (directory or file)
    format: str = "parquet"
    delimiter: str = ","  # csv only
    master: str = field(default="local[*]", repr=False)  # an sc:// URL may carry a token
    conf: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if (self.table is None) == (self.location is None):
            raise InvalidInput('a spark source needs either table = "..." or path = "..." (not both)')
        if self.format not in SPARK_FORMATS:
            raise InvalidInput(f"spark source format ({self.format!r}) must be one of {SPARK_FORMATS}")
        if not self.master.startswith(SPARK_MASTERS):
            raise InvalidInput(
                f"spark master ({describe_master(self.master)!r}) must start with one of {SPARK_MASTERS}"
            )
        if len(self.delimiter) != 1:
            raise InvalidInput(f"delimiter ({self.delimiter!r}) must be one character")
        for key, _ in self.conf:
            if not key.startswith("spark."):
                raise InvalidInput(f"spark conf key ({key!r}) must start with 'spark.'")

    @property
    def remote(self) -> bool:
        """Spark Connect (`sc://`, also Databricks Connect): the session is a client of a remote server."""
        return self.master.startswith("sc://")


def describe_master(master: str) -> str:
    """The master URL without parameters (an sc:// URL's `;token=...`) for names and messages."""
    return master.split(";", 1)[0].rstrip("/") if master.startswith("sc://") else master


@dataclass(frozen=True)
class SourceSpec:
    """A data source: a CSV/Parquet file, a DuckDB or PostgreSQL table or view, or an in-memory frame."""

    kind: str
    path: Path | None = None
    dsn: str | None = field(default=None, repr=False)  # may hold a password: never printed
    table: str | None = None
    statement_timeout_ms: int = DEFAULT_TIMEOUT_MS
    read_only: bool = True
    delimiter: str = ","
    name: str | None = None
    frame: pd.DataFrame | None = field(default=None, repr=False, compare=False, hash=False)
    spark: SparkSettings | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"source kind ({self.kind!r}) must be one of {KINDS}")
        if self.kind in ("csv", "parquet", "duckdb") and self.path is None:
            raise InvalidInput(f"a {self.kind} source needs a path")
        if self.kind == "duckdb" and not self.table:
            raise InvalidInput("a duckdb source needs a path (the database file) and a table")
        if self.kind == "postgresql" and (not self.dsn or not self.table):
            raise InvalidInput("a postgresql source needs a url (postgresql://...) and a table")
        if self.kind == "postgresql" and not self.dsn.startswith(("postgresql://", "postgres://")):  # type: ignore[union-attr]
            raise InvalidInput("the url of a postgresql source must start with postgresql://")
        if self.kind == "spark" and self.spark is None:
            raise InvalidInput("a spark source needs its settings (table or path, master)")
        if self.kind == "pandas" and self.frame is None:
            raise InvalidInput("a pandas source needs a frame")
        if self.statement_timeout_ms <= 0:
            raise InvalidInput(f"statement_timeout_ms ({self.statement_timeout_ms}) must be > 0")
        if not self.read_only:
            raise InvalidInput("read_only (False) must be true: data sources never write to the data")
        if len(self.delimiter) != 1:
            raise InvalidInput(f"delimiter ({self.delimiter!r}) must be one character")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str = "frame") -> SourceSpec:
        return cls(kind="pandas", frame=frame, name=name)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], base_dir: Path | str = ".") -> SourceSpec:
        """Parse a party.toml `[source]` table; relative paths are relative to `base_dir`."""
        unknown = set(config) - _CONFIG_KEYS
        if unknown:
            raise InvalidInput(f"[source] has unknown keys {sorted(unknown)}; known: {sorted(_CONFIG_KEYS)}")
        if config.get("kind") == "spark" or "master" in config or "master_env" in config:
            return cls(kind="spark", name=config.get("name"), spark=spark_settings(config, Path(base_dir)))
        dsn = config.get("url", config.get("dsn"))
        if "url_env" in config:
            dsn = os.environ.get(str(config["url_env"]))
            if not dsn:
                raise InvalidInput(f"[source] url_env: environment variable {config['url_env']} is not set")
        raw_path = config.get("path")
        if isinstance(raw_path, str) and raw_path.startswith(_URL_PREFIXES) and dsn is None:
            dsn, raw_path = raw_path, None  # `source = "postgresql://..."` given where a path goes
        path = Path(base_dir) / str(raw_path) if raw_path is not None else None
        kind = str(config.get("kind") or _infer_kind(path, dsn))
        return cls(
            kind=kind,
            path=path,
            dsn=dsn,
            table=config.get("table"),
            statement_timeout_ms=int(config.get("statement_timeout_ms", DEFAULT_TIMEOUT_MS)),
            read_only=bool(config.get("read_only", True)),
            delimiter=str(config.get("delimiter", ",")),
            name=config.get("name"),
        )


def _infer_kind(path: Path | None, dsn: str | None) -> str:
    if path is not None and dsn is not None:
        raise InvalidInput("[source] has both path and url; give one")
    if dsn is not None:
        return "postgresql"
    if path is None:
        raise InvalidInput('[source] needs path = "...csv|parquet" or url = "postgresql://..."')
    kind = _SUFFIX_KINDS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(
            f"[source] path {path}: cannot infer the kind from suffix {path.suffix!r}; "
            f'set kind = "csv" or "parquet"'
        )
    return kind


def spark_settings(config: Mapping[str, Any], base_dir: Path) -> SparkSettings:
    """The `[source]` keys of a spark source: table or path (+ format), master or master_env, conf."""
    master = config.get("master")
    if "master_env" in config:
        master = os.environ.get(str(config["master_env"]))
        if not master:
            raise InvalidInput(f"[source] master_env: environment variable {config['master_env']} is not set")
    conf = config.get("conf", {})
    if not isinstance(conf, Mapping):
        raise InvalidInput('[source] conf must be a table of Spark settings, e.g. { "spark.x" = "1" }')
    raw_path = config.get("path")
    location = None if raw_path is None else str(raw_path)
    if location is not None and not _URI.match(location):
        location = str((base_dir / location).resolve())  # a local path; URIs go to the cluster as they are
    suffix = Path(location.rstrip("/")).suffix.lower() if location else ""
    return SparkSettings(
        table=None if config.get("table") is None else str(config["table"]),
        location=location,
        format=str(config.get("format") or _SPARK_SUFFIXES.get(suffix, "parquet")),
        delimiter=str(config.get("delimiter", ",")),
        master=str(master or "local[*]"),
        conf=tuple((str(k), _conf_text(v)) for k, v in conf.items()),
    )


def _conf_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
