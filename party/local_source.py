"""Stand-in data source (in-memory pandas over a CSV) until `party.sources` lands; same method names.

Delete once `party.sources.open_source` is on main (transport.core_api prefers it automatically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.errors import SchemaError


class LocalSource:
    def __init__(self, path: Path, schema: Any) -> None:
        self.path = Path(path)
        self.schema = schema
        self._frame: pd.DataFrame | None = None
        self._encoded: Any = None

    def read_frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.read_csv(self.path)
        return self._frame

    def check_schema(self) -> None:
        names = [c.name for c in self.schema.columns]
        missing = [n for n in names if n not in self.read_frame().columns]
        if missing:
            raise SchemaError(f"{self.path}: columns {missing} required by the schema are missing")
        self._encode()

    def row_count(self) -> int:
        return len(self.read_frame())

    def _encode(self) -> Any:
        if self._encoded is None:
            from cleanroom.encoding import encode

            self._encoded = encode(self.schema, self.read_frame(), source=str(self.path))
        return self._encoded

    def count_tables(self, cliques: list[tuple[str, ...]]) -> list[np.ndarray]:
        from cleanroom.marginals import count_tables

        encoded = self._encode()
        return [np.asarray(t, dtype=np.int64) for t in count_tables(encoded.codes, encoded.domain, cliques)]

    def validation_report(self) -> Any:
        return self._encode().report


def open_source(spec: Any, schema: Any) -> LocalSource:
    path = spec["path"] if isinstance(spec, dict) else spec
    return LocalSource(Path(path), schema)
