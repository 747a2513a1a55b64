"""Bad input: every case gets a specific error naming the source, column and (for files) the first bad row."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_sources_support import frame, pg_dsn, pg_table, schema, write_csv, write_parquet

from cleanroom.encoding import encode
from cleanroom.errors import DataError, NotFound, PreconditionFailed, SchemaError
from cleanroom.schema import Schema
from party.sources import DataSource, SourceSpec, open_source

ALL_KINDS = ["pandas", "csv", "parquet", "postgresql"]
Opener = Callable[[str, pd.DataFrame, Schema], DataSource]


def spec_for(kind: str, df: pd.DataFrame, tmp_path: Path, stack: ExitStack) -> SourceSpec:
    if kind == "pandas":
        return SourceSpec.from_frame(df, "mem")
    if kind == "csv":
        return SourceSpec(kind="csv", path=write_csv(df, tmp_path / "d.csv"))
    if kind == "parquet":
        return SourceSpec(kind="parquet", path=write_parquet(df, tmp_path / "d.parquet"))
    dsn = pg_dsn()
    return SourceSpec(kind="postgresql", dsn=dsn, table=stack.enter_context(pg_table(df)))


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Callable[[str, pd.DataFrame, Schema], DataSource]]:
    """open(kind, df, schema) -> DataSource; closes sources and drops PostgreSQL tables afterwards."""
    with ExitStack() as stack:

        def _open(kind: str, df: pd.DataFrame, the_schema: Schema) -> DataSource:
            source = open_source(spec_for(kind, df, tmp_path, stack), the_schema)
            stack.callback(source.close)
            return source

        yield _open


def where(kind: str, row: int) -> str:
    """The row reference each kind of source gives (PostgreSQL has no row order)."""
    return {
        "pandas": f"row {row}:",
        "csv": f"row {row} (0-based data row; line {row + 2} of the file)",
        "parquet": f"row {row} (0-based row of the Parquet file)",
        "postgresql": "ctid (",
    }[kind]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_unknown_category_rejected_with_first_row(kind: str, opened: Opener) -> None:
    df = frame(50)
    df["segment"] = "a"
    df.loc[[17, 30], "segment"] = ["zz", "yy"]
    source = opened(kind, df, schema())
    with pytest.raises(DataError) as caught:
        source.count_tables([("age", "fare")])  # the rejecting column need not be in the request
    message = str(caught.value)
    assert source.name in message and "column 'segment'" in message and "unknown category" in message
    assert where(kind, 17) in message and "(2 such rows)" in message
    if kind != "postgresql":
        assert "'zz'" in message
    report = source.validation_report()  # the operator's report: counts, no exception
    assert not report["ok"] and report.get("columns", {}).get("segment", {"rejected": 2})["rejected"] == 2


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_out_of_range_rejected(kind: str, opened: Opener) -> None:
    df = frame(40)
    df["fare"] = 10.0
    df.loc[12, "fare"] = 1500.5
    source = opened(kind, df, schema(fare={"policy": {"out_of_range": "reject"}}))
    with pytest.raises(DataError, match=r"column 'fare'.*outside \[0, 1000\]: '?1500.5'? \(1 such rows\)"):
        source.count_tables([("fare",)])
    assert where(kind, 12) in str(pytest.raises(DataError, source.count, ("age",)).value)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_missing_rejected_before_unknown(kind: str, opened: Opener) -> None:
    """Like the encoder, a column's missing-value check comes before its unknown-category check."""
    df = frame(40)
    df["segment"] = "b"
    df.loc[3, "segment"] = "unknown!"
    df.loc[9, "segment"] = None
    df["segment"] = df["segment"].astype(object)
    source = opened(kind, df, schema(segment={"policy": {"missing": "reject"}}))
    with pytest.raises(DataError, match="column 'segment'.*missing value rejected by policy") as caught:
        source.count_tables([("segment",)])
    assert where(kind, 9) in str(caught.value)


@pytest.mark.parametrize("kind", ["pandas", "csv", "parquet", "postgresql"])
def test_nan_with_missing_reject(kind: str, opened: Opener) -> None:
    df = frame(30)
    df["ratio"] = 0.5
    df.loc[21, "ratio"] = np.nan
    source = opened(kind, df, schema(ratio={"policy": {"missing": "reject", "out_of_range": "clip"}}))
    with pytest.raises(DataError, match="column 'ratio'.*missing value rejected") as caught:
        source.count_tables([("ratio", "age")])
    assert where(kind, 21) in str(caught.value)


@pytest.mark.parametrize("kind", ["csv", "postgresql"])
def test_text_that_is_not_a_number(kind: str, opened: Opener) -> None:
    df = frame(30)
    df["fare"] = ["12.5"] * 30
    df.loc[[4, 8], "fare"] = ["twelve", "1,5"]
    source = opened(kind, df, schema())
    with pytest.raises(
        DataError, match=r"column 'fare'.*cannot cast to a number: 'twelve' \(2 such rows\)"
    ) as c:
        source.count_tables([("fare",)])
    assert where(kind, 4) in str(c.value)
    with pytest.raises(DataError, match="cannot cast to a number: 'twelve'"):
        encode(schema(), df)  # the same data, the same verdict from the core encoder


def test_type_that_cannot_be_cast(tmp_path: Path) -> None:
    df = frame(10).assign(age=pd.Timestamp("2020-01-01"))
    path = write_parquet(df, tmp_path / "dates.parquet")
    with (
        open_source(SourceSpec(kind="parquet", path=path), schema()) as source,
        pytest.raises(SchemaError, match=r"dates.parquet: column 'age' has type TIMESTAMP.*cannot be cast"),
    ):
        source.check_schema()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_missing_and_misnamed_columns(kind: str, opened: Opener) -> None:
    source = opened(
        kind, frame(10).rename(columns={"country": "Country"}).drop(columns=["segment"]), schema()
    )
    with pytest.raises(
        SchemaError, match=r"column 'country' of the schema is missing.*did you mean 'Country'"
    ):
        source.check_schema()
    with pytest.raises(SchemaError, match="column 'country'"):
        source.count_tables([("age",)])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_empty_table(kind: str, opened: Opener) -> None:
    source = opened(kind, frame(10).iloc[:0], schema())
    source.check_schema()
    assert source.row_count() == 0
    with pytest.raises(DataError, match="empty"):
        source.count_tables([("age",)])
    report = source.validation_report()
    assert report["rows"] == 0 and not report["ok"]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nope.parquet does not exist"):
        open_source(SourceSpec(kind="parquet", path=tmp_path / "nope.parquet"), schema())
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(DataError, match="zero.csv is empty"):
        open_source(SourceSpec(kind="csv", path=tmp_path / "zero.csv"), schema())
    (tmp_path / "ragged.csv").write_text("age,fare\n1,2\n3,4,5,6\n")
    with (
        open_source(SourceSpec(kind="csv", path=tmp_path / "ragged.csv"), schema()) as source,
        pytest.raises(SchemaError, match="ragged.csv: column 'ratio'"),
    ):
        source.check_schema()


def test_malformed_csv_names_the_file(tmp_path: Path) -> None:
    df = frame(20)
    path = write_csv(df, tmp_path / "bad.csv")
    lines = path.read_text().splitlines()
    lines[5] += ",extra,fields"
    path.write_text("\n".join(lines) + "\n")
    with (
        open_source(SourceSpec(kind="csv", path=path), schema()) as source,
        pytest.raises(DataError, match="bad.csv"),
    ):
        source.count_tables([("age",)])


def test_postgresql_missing_table_timeout_and_read_only() -> None:
    from party.sources.postgres import PostgresSource

    dsn = pg_dsn()
    with pytest.raises(NotFound, match="no_such_table"):
        open_source(SourceSpec(kind="postgresql", dsn=dsn, table="no_such_table"), schema()).check_schema()
    with pg_table(frame(10)) as table:
        source = open_source(
            SourceSpec(kind="postgresql", dsn=dsn, table=table, statement_timeout_ms=50), schema()
        )
        assert isinstance(source, PostgresSource)
        with pytest.raises(PreconditionFailed, match="statement timeout \\(50 ms\\)"):
            source._execute("SELECT pg_sleep(2)")
        with pytest.raises(DataError, match="read-only"):
            source._execute(f"DELETE FROM {table}")
        source.close()
    with pytest.raises(PreconditionFailed, match="cannot connect"):
        open_source(
            SourceSpec(kind="postgresql", dsn="postgresql://nobody@127.0.0.1:1/x", table="t"), schema()
        )
