"""An in-memory pandas frame as a data source: the reference path (tests, small data).

Counting goes through `cleanroom.encoding.encode` and `cleanroom.marginals.count_tables`, so the SQL sources
are checked against the core encoder by the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.encoding import EncodedData, encode
from cleanroom.errors import DataError
from cleanroom.marginals import count_tables
from party.sources.base import DataSource, missing_column_error
from party.sources.rules import SchemaRules


class FrameSource(DataSource):
    """A DataFrame held in memory."""

    def __init__(self, frame: pd.DataFrame, schema: Any, rules: SchemaRules, *, name: str = "frame") -> None:
        super().__init__(name, schema, rules)
        self._frame = frame
        self._encoded: EncodedData | None = None

    def check_schema(self) -> None:
        for column in self.rules.names:
            if column not in self._frame.columns:
                raise missing_column_error(self.name, column, [str(c) for c in self._frame.columns])

    def _encode(self) -> EncodedData:
        if self._encoded is None:
            self.check_schema()
            self._encoded = encode(self.schema, self._frame, source=self.name)
        return self._encoded

    def row_count(self) -> int:
        return len(self._frame)

    def count_tables(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
        for clique in cliques:
            self._canonical_positions(clique)
        encoded = self._encode()
        if encoded.codes.shape[0] == 0:
            raise self._empty_error()
        return count_tables(encoded.codes, encoded.domain, [tuple(c) for c in cliques])

    def validation_report(self) -> dict[str, Any]:
        """The encoder's report; a rejected value stops it, so `error` names only the first problem."""
        try:
            report = self._encode().report.to_dict()
        except DataError as error:
            return {
                "source": self.name,
                "rows": len(self._frame),
                "ok": False,
                "columns": {},
                "error": str(error),
            }
        for entry in report["columns"].values():
            entry["rejected"] = 0
        return {**report, "ok": report["rows"] > 0}

    def read_frame(self) -> pd.DataFrame:
        present = [c for c in (*self.rules.names, *self.rules.identifiers) if c in self._frame.columns]
        return self._frame[present].copy()
