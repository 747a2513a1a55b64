"""All sources give identical tables and reports: pandas (core encoder), DuckDB CSV/Parquet, PostgreSQL."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from schema_paths import ADULT_DIR
from test_sources_support import frame, pg_table, schema, write_csv, write_parquet

from cleanroom.encoding import encode
from cleanroom.errors import InvalidInput, NotFound
from cleanroom.marginals import count_table
from cleanroom.schema import Schema
from party.sources import DataSource, SourceSpec, open_source


def all_cliques(attrs: tuple[str, ...]) -> list[tuple[str, ...]]:
    pairs = list(itertools.combinations(attrs, 2))
    return [(a,) for a in attrs] + pairs + [tuple(reversed(attrs[:3])), ()]


def assert_same_tables(expected: list[np.ndarray], actual: list[np.ndarray], label: str) -> None:
    assert len(expected) == len(actual)
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        assert a.dtype == np.int64, label
        assert a.shape == e.shape, f"{label}: table {i} shape {a.shape} != {e.shape}"
        assert np.array_equal(a, e), f"{label}: table {i} differs"


def check_source(source: DataSource, df: pd.DataFrame) -> None:
    """Tables equal cleanroom.marginals.count_table on cleanroom.encoding.encode's codes; report matches."""
    s = source.schema
    encoded = encode(s, df, source="reference")
    cliques = all_cliques(s.domain.attrs)
    expected = [count_table(encoded.codes, s.domain, c) for c in cliques]
    source.check_schema()
    assert_same_tables(expected, source.count_tables(cliques), source.name)
    reversed_pair = (s.domain.attrs[-1], s.domain.attrs[0])  # non-canonical order: laid out canonically
    assert np.array_equal(source.count(reversed_pair), count_table(encoded.codes, s.domain, reversed_pair))
    assert source.row_count() == len(df)
    report = source.validation_report()
    reference = encoded.report.to_dict()
    assert report["rows"] == reference["rows"] and report["ok"]
    for name, counts in reference["columns"].items():
        assert {k: report["columns"][name][k] for k in counts} == counts, name
        assert report["columns"][name]["rejected"] == 0


@pytest.fixture
def data() -> pd.DataFrame:
    return frame()


def test_policies_are_exercised(data: pd.DataFrame) -> None:
    report = encode(schema(), data).report
    assert report.column("fare").clipped > 0 and report.column("fare").missing > 0
    assert report.column("ratio").missing_mapped > 0
    assert report.column("country").other > 0 and report.column("country").missing > 0
    assert report.column("tier").missing_mapped > 0 and report.column("age").missing > 0


def test_pandas_source(data: pd.DataFrame) -> None:
    with open_source(SourceSpec.from_frame(data, "mem"), schema()) as source:
        check_source(source, data)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_file_sources_match_the_encoder(kind: str, data: pd.DataFrame, tmp_path: Path) -> None:
    writer = write_csv if kind == "csv" else write_parquet
    path = writer(data, tmp_path / f"data.{kind}")
    with open_source(SourceSpec.from_config({"path": path.name}, tmp_path), schema()) as source:
        assert source.name.startswith(kind)
        check_source(source, data)
        frame_back = source.read_frame()
    assert list(frame_back.columns) == ["age", "fare", "ratio", "country", "tier", "segment", "customer_id"]
    assert len(frame_back) == len(data)


def test_postgresql_source_matches_the_encoder(data: pd.DataFrame) -> None:
    from test_sources_support import pg_dsn

    with (
        pg_table(data) as table,
        open_source(SourceSpec(kind="postgresql", dsn=pg_dsn(), table=table), schema()) as source,
    ):
        password = pg_dsn().split("@")[0].split(":")[-1]
        assert source.name.startswith("postgresql://") and password not in source.name
        check_source(source, data)
        assert len(source.read_frame()) == len(data)


@pytest.mark.parametrize("relation", ["table", "view"])
def test_postgresql_streamed_counts_equal_server_aggregation(
    relation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The party-side count of the binary COPY stream equals what the server's GROUP BY counts: a table read
    by many one-page block ranges (arrays), and a view (one message per row)."""
    import psycopg
    from test_sources_support import pg_dsn

    from party.sources import postgres
    from party.sources.postgres import PostgresSource

    monkeypatch.setattr(postgres, "BLOCKS_PER_RANGE", 1)
    data = frame(3000)
    with pg_table(data) as table, psycopg.connect(pg_dsn(), autocommit=True) as admin:
        name = table
        if relation == "view":
            name = f"{table}_view"
            admin.execute(f"CREATE VIEW {name} AS SELECT * FROM {table}")
        else:
            assert admin.execute(f"SELECT pg_relation_size('{table}') > 3 * 8192").fetchone() == (True,)
        source = open_source(SourceSpec(kind="postgresql", dsn=pg_dsn(), table=name), schema())
        assert isinstance(source, PostgresSource)
        with source.transaction_cursor() as cursor:
            assert (source._block_count(cursor) is None) == (relation == "view")
        check_source(source, data)
        n = len(source.domain)
        sets = (
            [(j,) for j in range(n)] + list(itertools.combinations(range(n), 2)) + [tuple(range(min(n, 3)))]
        )
        streamed, on_server = source._grouped_counts(sets), source._grouped_counts_on_server(sets)
        for group in sets:
            for result in (streamed, on_server):
                codes, counts = result[group]
                order = np.lexsort(codes.T[::-1]) if codes.size else np.arange(len(counts))
                result[group] = (codes[order], counts[order])
            np.testing.assert_array_equal(streamed[group][0], on_server[group][0])
            np.testing.assert_array_equal(streamed[group][1], on_server[group][1])
            assert int(streamed[group][1].sum()) == len(data)
        source.close()
        if relation == "view":
            admin.execute(f"DROP VIEW {name}")


def test_postgresql_text_columns_match(data: pd.DataFrame) -> None:
    """Numbers stored as text (with blanks) and float-typed categories give the same tables."""
    texts = data.assign(
        fare=[("" if np.isnan(v) else repr(float(v))) for v in data["fare"]],
        tier=data["tier"].astype("float64"),
    )
    with pg_table(texts, types={"fare": "text"}) as table:
        from test_sources_support import pg_dsn

        with open_source(SourceSpec(kind="postgresql", dsn=pg_dsn(), table=table), schema()) as source:
            check_source(source, data)


def test_identifier_columns_are_optional(data: pd.DataFrame, tmp_path: Path) -> None:
    path = write_parquet(data.drop(columns=["customer_id"]), tmp_path / "noid.parquet")
    with open_source(SourceSpec(kind="parquet", path=path), schema()) as source:
        check_source(source, data)
        assert "customer_id" not in source.read_frame().columns


def test_float_categories_and_strings_in_parquet(data: pd.DataFrame, tmp_path: Path) -> None:
    """tier as float64 (13.0 matches "13") and fare as strings behave like the encoder."""
    changed = data.assign(
        tier=data["tier"].astype("float64"),
        fare=[None if np.isnan(v) else repr(float(v)) for v in data["fare"]],
    )
    path = write_parquet(changed, tmp_path / "mixed.parquet")
    with open_source(SourceSpec(kind="parquet", path=path), schema()) as source:
        check_source(source, changed)


def test_three_sources_identical_on_adult(tmp_path: Path) -> None:
    if not (ADULT_DIR / "train.csv").is_file():
        pytest.skip(f"shared Adult data not found at {ADULT_DIR}")
    adult_schema = Schema.load(ADULT_DIR / "schema.json")
    df = pd.read_csv(ADULT_DIR / "train.csv").head(5000)
    path = write_csv(df, tmp_path / "adult.csv")
    with open_source(SourceSpec(kind="csv", path=path), adult_schema) as source:
        check_source(source, df)


def test_spec_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SourceSpec.from_config({"path": "d.parquet"}, tmp_path) == SourceSpec(
        kind="parquet", path=tmp_path / "d.parquet"
    )
    assert SourceSpec.from_config({"path": "d.CSV", "delimiter": ";"}, tmp_path).kind == "csv"
    assert SourceSpec.from_config({"path": "d.txt", "kind": "csv"}, tmp_path).kind == "csv"
    spec = SourceSpec.from_config(
        {"url": "postgresql://u:secret@h/db", "table": "customers", "statement_timeout_ms": 5000}, tmp_path
    )
    assert (spec.kind, spec.table, spec.statement_timeout_ms) == ("postgresql", "customers", 5000)
    assert "secret" not in repr(spec)
    monkeypatch.setenv("MY_DSN", "postgresql://u@h/db")
    assert SourceSpec.from_config({"url_env": "MY_DSN", "table": "t"}).dsn == "postgresql://u@h/db"
    for bad, words in [
        ({"path": "d.txt"}, "cannot infer"),
        ({"path": "a.csv", "url": "postgresql://h/d"}, "both"),
        ({"url": "postgresql://h/d"}, "table"),
        ({"pth": "a.csv"}, "unknown keys"),
        ({"path": "a.csv", "read_only": False}, "read_only"),
        ({"url_env": "NOPE_X", "table": "t"}, "NOPE_X"),
        ({"url": "mysql://h/d", "table": "t"}, "postgresql://"),
        ({"path": "a.csv", "statement_timeout_ms": 0}, "statement_timeout_ms"),
    ]:
        with pytest.raises(InvalidInput, match=words):
            SourceSpec.from_config(bad, tmp_path)


def test_postgresql_cover_sets_cover_every_table_within_budget() -> None:
    from party.sources.postgres import COVER_CELL_BUDGET, cover_sets, sub_grouped

    shape = (11, 26, 13, 31, 9, 21, 17, 4, 5, 7, 10, 14, 18, 22, 42)
    pairs = list(itertools.combinations(range(len(shape)), 2))
    covers = cover_sets(pairs, shape)
    assert len(covers) < len(pairs) / 2
    assert all(any(set(p) <= set(c) for c in covers) for p in pairs)
    assert all(np.prod([shape[j] + 1 for j in c]) <= COVER_CELL_BUDGET for c in covers)
    codes = np.array([[0, 1, 2], [0, 1, 3], [-1, 1, 2], [0, 2, 2]])
    sub_codes, sub_counts = sub_grouped({(0, 1, 2): (codes, np.array([5, 6, 7, 8]))}, (0, 2))
    assert dict(zip(map(tuple, sub_codes), sub_counts, strict=True)) == {(0, 2): 13, (0, 3): 6, (-1, 2): 7}


def test_duckdb_database_table_and_url_given_as_path(data: pd.DataFrame, tmp_path: Path) -> None:
    import duckdb

    database = tmp_path / "party.duckdb"
    with duckdb.connect(str(database)) as con:
        con.register("frame", data)
        con.execute("CREATE TABLE customers AS SELECT * FROM frame")
    spec = SourceSpec.from_config({"path": "party.duckdb", "table": "customers"}, tmp_path)
    assert spec.kind == "duckdb"
    with open_source(spec, schema()) as source:
        check_source(source, data)
    with (
        pytest.raises(NotFound, match="nope"),
        open_source(SourceSpec(kind="duckdb", path=database, table="nope"), schema()) as missing,
    ):
        missing.check_schema()
    url = SourceSpec.from_config({"path": "postgresql://u@h/db", "table": "t"}, tmp_path)
    assert (url.kind, url.dsn, url.path) == ("postgresql", "postgresql://u@h/db", None)
