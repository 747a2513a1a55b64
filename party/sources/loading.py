"""Write a DataFrame into a PostgreSQL table, for demos, simulations and tests (sources never write).

Column types follow the frame: integer -> bigint, float -> double precision, boolean -> boolean, anything else
-> text; NaN/None/NA become NULL. Rows are streamed with COPY.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql as pgsql


def postgres_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series.dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(series.dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(series.dtype):
        return "double precision"
    return "text"


def _cell(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def write_postgres_table(
    dsn: str, table: str, frame: pd.DataFrame, *, replace: bool = True, types: dict[str, str] | None = None
) -> None:
    """Create `table` (dropping an existing one when `replace`) and COPY the frame's rows into it."""
    types = types or {}
    name = pgsql.Identifier(*table.split("."))
    columns = pgsql.SQL(", ").join(
        pgsql.SQL("{} {}").format(
            pgsql.Identifier(str(c)), pgsql.SQL(types.get(str(c), postgres_type(frame[c])))
        )
        for c in frame.columns
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        if replace:
            conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(pgsql.SQL("CREATE TABLE {} ({})").format(name, columns))
        with conn.cursor().copy(pgsql.SQL("COPY {} FROM STDIN").format(name)) as copy:
            for row in frame.itertuples(index=False):
                copy.write_row([_cell(v) for v in row])


def drop_postgres_table(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(pgsql.Identifier(*table.split("."))))
