"""`SourceSpec`: where a party's data lives, parsed from the `[source]` table of its party.toml.

```toml
[source]
path = "data/customers.parquet"        # kind inferred from the suffix: .parquet/.pq -> parquet, .csv -> csv
# or
url = "postgresql://reader@db.internal:5432/crm"   # or url_env = "CRM_DSN" (password not in the file)
table = "customers"                                 # table or view, optionally schema-qualified
statement_timeout_ms = 300000
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cleanroom.errors import InvalidInput

KINDS = ("csv", "parquet", "duckdb", "postgresql", "pandas")
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
}
DEFAULT_TIMEOUT_MS = 600_000


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
