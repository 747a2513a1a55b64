"""Where each party of a local demo/simulation keeps its data: a CSV file, a Parquet file or a PostgreSQL
table.

`cleanroom demo --sources parquet,csv,postgresql` gives one kind per party. CSV and Parquet files go to
`<work>/data/`; a PostgreSQL party's rows are loaded into the table `cleanroom_demo_<party>` of the database
named by `CLEANROOM_PG_DSN`, and its party.toml names the variable (`url_env`), never the DSN itself: the
party process inherits the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from cleanroom.errors import InvalidInput

SOURCE_KINDS = ("csv", "parquet", "postgresql", "spark")
# A spark party reads its Parquet file through a local Spark (pyspark and Java) that the party starts.
SPARK_DEMO_SOURCE = {"kind": "spark", "master": "local[1]"}
PG_ENV = "CLEANROOM_PG_DSN"


def parse_sources(text: str | None, parties: list[str]) -> dict[str, str]:
    """`"parquet,csv,postgresql"` -> party id -> kind, one kind per party in order; None -> all csv."""
    if text is None:
        return dict.fromkeys(parties, "csv")
    kinds = [k.strip().lower() for k in text.split(",")]
    unknown = [k for k in kinds if k not in SOURCE_KINDS]
    if unknown:
        raise InvalidInput(f"--sources: unknown kind {unknown[0]!r}; use one of {', '.join(SOURCE_KINDS)}")
    if len(kinds) != len(parties):
        raise InvalidInput(
            f"--sources gives {len(kinds)} kinds for {len(parties)} parties; give one per party"
        )
    if "postgresql" in kinds:
        postgres_dsn()  # fail before any certificate or file is written
    return dict(zip(parties, kinds, strict=True))


def postgres_dsn() -> str:
    dsn = os.environ.get(PG_ENV, "")
    if not dsn:
        raise InvalidInput(
            f"a postgresql source needs a PostgreSQL server in {PG_ENV}; "
            f'run eval "$(bash scripts/start_postgres.sh)" first'
        )
    return dsn


def demo_table(pid: str) -> str:
    return f"cleanroom_demo_{pid}"


def read_party_csv(path: Path) -> pd.DataFrame:
    """A party's CSV as text, exactly as written (empty fields stay empty strings, which count as missing)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_party_data(data_dir: Path, pid: str, data: pd.DataFrame | Path, kind: str) -> None:
    """Put one party's rows where its source kind says (file under `data_dir`, or a PostgreSQL table)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        if isinstance(data, pd.DataFrame):
            data.to_csv(data_dir / f"{pid}.csv", index=False)
        else:
            (data_dir / f"{pid}.csv").write_bytes(data.read_bytes())
        return
    frame = data if isinstance(data, pd.DataFrame) else read_party_csv(data)
    if kind in ("parquet", "spark"):
        frame.to_parquet(data_dir / f"{pid}.parquet", index=False)
    elif kind == "postgresql":
        from party.sources.loading import write_postgres_table

        write_postgres_table(postgres_dsn(), demo_table(pid), frame)
    else:
        raise InvalidInput(f"party {pid}: unknown source kind {kind!r}")


def source_entry(pid: str, kind: str) -> str | dict[str, Any]:
    """The party.toml `[data] source` value for this party's kind (paths relative to the work directory)."""
    if kind == "postgresql":
        return {"url_env": PG_ENV, "table": demo_table(pid)}
    if kind == "spark":
        return {**SPARK_DEMO_SOURCE, "path": f"data/{pid}.parquet"}
    return f"data/{pid}.{kind}"


def describe_sources(kinds: dict[str, str]) -> str:
    parts = [
        f"{pid} {kind}" + (f" ({demo_table(pid)})" if kind == "postgresql" else "")
        for pid, kind in kinds.items()
    ]
    return "[local] party data sources: " + ", ".join(parts)
