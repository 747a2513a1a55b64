"""The Spark source (party/sources/spark.py) in local mode: the same tables, reports and errors as DuckDB.

One local[2] SparkSession for the module (Java and pyspark needed: without them the tests skip, with
CI=true they fail, as .ci/run installs both). Every table is compared with the DuckDB source on the same
file and with the core encoder; every rejected value gives the DuckDB source's message but for where the row
is. The spec tests need neither Java nor pyspark.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_sources import all_cliques, assert_same_tables, check_source
from test_sources_support import frame, schema, write_csv, write_parquet

from cleanroom.errors import DataError, InvalidInput, NotFound, PreconditionFailed, SchemaError
from cleanroom.sample_data import generate, sample_schema
from cleanroom.schema import Schema
from party.sources import DataSource, SourceSpec, open_source
from party.sources.spec import SparkSettings, describe_master

MASTER = "local[2]"
SPARK_WHERE = "(0-based, in the order Spark reads the files)"
DUCK_WHERE = "(0-based row of the Parquet file)"


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A small local Spark for the whole module (start-up is the expensive part: a JVM)."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _skip_or_fail("no Java: install openjdk-17-jre-headless to run the Spark source tests")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _skip_or_fail('no pyspark: pip install -e ".[dev]" (or ".[spark]") to run the Spark source tests')
    session = (
        SparkSession.builder.master(MASTER)
        .appName("cleanroom-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def sources(spark: Any, tmp_path: Path) -> Iterator[Callable[..., tuple[DataSource, DataSource]]]:
    """open(df, schema, kind) -> (spark source, DuckDB source) over the same file; closed afterwards."""
    opened: list[DataSource] = []

    def _open(df: pd.DataFrame, the_schema: Schema, kind: str = "parquet") -> tuple[DataSource, DataSource]:
        path = (write_parquet if kind == "parquet" else write_csv)(
            df, tmp_path / f"data-{len(opened)}.{kind}"
        )
        spark_source = open_source(spark_spec(path), the_schema)
        duck_source = open_source(SourceSpec(kind=kind, path=path), the_schema)
        opened.extend([spark_source, duck_source])
        return spark_source, duck_source

    yield _open
    for source in opened:
        source.close()


def spark_spec(path: Path, **extra: Any) -> SourceSpec:
    return SourceSpec.from_config({"kind": "spark", "path": str(path), "master": MASTER, **extra})


def assert_same_as_duckdb(spark_source: DataSource, duck_source: DataSource, cliques: list[Any]) -> None:
    assert_same_tables(
        duck_source.count_tables(cliques), spark_source.count_tables(cliques), spark_source.name
    )
    assert spark_source.row_count() == duck_source.row_count()
    expected = {k: v for k, v in duck_source.validation_report().items() if k != "source"}
    assert {k: v for k, v in spark_source.validation_report().items() if k != "source"} == expected


def test_sample_data_tables_equal_duckdb(sources: Callable[..., Any]) -> None:
    """The demo's data (CSV is covered by the adversarial test: each format compiles its own Spark code)."""
    the_schema = sample_schema()
    spark_source, duck_source = sources(generate(3000, seed=11), the_schema, "parquet")
    spark_source.check_schema()
    assert spark_source.name.startswith("spark ") and MASTER in spark_source.name
    assert_same_as_duckdb(spark_source, duck_source, all_cliques(the_schema.domain.attrs))


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_adversarial_data_equals_the_encoder_and_duckdb(kind: str, sources: Callable[..., Any]) -> None:
    """NaN, +-inf, values on edges, out of range (clipped / mapped to missing), unknown categories (other /
    missing), blank and Unicode-blank strings, integers matching text categories."""
    data = frame()
    spark_source, duck_source = sources(data, schema(), kind)
    check_source(spark_source, data)
    assert_same_as_duckdb(spark_source, duck_source, all_cliques(schema().domain.attrs))
    back = spark_source.read_frame()
    assert list(back.columns) == ["age", "fare", "ratio", "country", "tier", "segment", "customer_id"]
    assert len(back) == len(data) and back["fare"].iloc[0] == np.inf


def test_packed_keys_equal_grouping_sets(sources: Callable[..., Any]) -> None:
    """The counting path (packed cover keys) gives the tables of Spark's own GROUPING SETS."""
    from party.sources.base import maximal_sets

    spark_source, _ = sources(frame(300, seed=3), schema())
    n = len(spark_source.domain.attrs)
    sets = maximal_sets([(j,) for j in range(n)] + list(itertools.combinations(range(n), 2)) + [(0, 2, 5)])
    packed = spark_source._grouped_counts(sets)
    grouping = spark_source._grouped_counts_by_grouping_sets(sets)
    for group in sets:
        assert np.array_equal(
            spark_source._scatter(group, *packed[group]), spark_source._scatter(group, *grouping[group])
        ), group


def _same_error(spark_source: DataSource, duck_source: DataSource, clique: tuple[str, ...]) -> str:
    """Both raise DataError; the messages agree but for the source name and how the row is located."""
    with pytest.raises(DataError) as from_spark:
        spark_source.count_tables([clique])
    with pytest.raises(DataError) as from_duck:
        duck_source.count_tables([clique])
    spark_text, duck_text = str(from_spark.value), str(from_duck.value)
    assert spark_text.startswith(spark_source.name + ": ") and SPARK_WHERE in spark_text
    spark_rest = spark_text.removeprefix(spark_source.name).replace(SPARK_WHERE, DUCK_WHERE)
    assert spark_rest == duck_text.removeprefix(duck_source.name)
    assert from_spark.value.column == from_duck.value.column
    assert "\n" not in spark_text
    return spark_text


def test_unknown_category_rejected_like_duckdb(sources: Callable[..., Any]) -> None:
    df = frame(50)
    df["segment"] = "a"
    df.loc[[17, 30], "segment"] = ["zz", "yy"]
    spark_source, duck_source = sources(df, schema())
    text = _same_error(spark_source, duck_source, ("age", "fare"))
    assert "column 'segment', row 17 " in text and "unknown category 'zz' (2 such rows)" in text
    report = spark_source.validation_report()
    assert not report["ok"] and report["columns"]["segment"]["rejected"] == 2


def test_out_of_range_missing_and_nan_rejected_like_duckdb(sources: Callable[..., Any]) -> None:
    df = frame(40)
    df["fare"] = 10.0
    df.loc[12, "fare"] = 1500.5
    text = _same_error(*sources(df, schema(fare={"policy": {"out_of_range": "reject"}})), ("fare",))
    assert "row 12 " in text and "outside [0, 1000]: 1500.5 (1 such rows)" in text
    df = frame(40)
    df["segment"] = "b"
    df.loc[3, "segment"] = "unknown!"
    df.loc[9, "segment"] = None
    text = _same_error(*sources(df, schema(segment={"policy": {"missing": "reject"}})), ("segment",))
    assert "row 9 " in text and "missing value rejected by policy" in text  # missing before unknown
    df = frame(30)
    df["ratio"] = 0.5
    df.loc[21, "ratio"] = np.nan
    the_schema = schema(ratio={"policy": {"missing": "reject", "out_of_range": "clip"}})
    assert "row 21 " in _same_error(*sources(df, the_schema), ("ratio", "age"))


def test_text_that_is_not_a_number(sources: Callable[..., Any]) -> None:
    """A CSV is read as text: '1d' and '0x1p3' (numbers to Spark's cast) are rejected like elsewhere."""
    df = frame(30)
    df["fare"] = ["12.5"] * 30
    df.loc[[4, 8, 9, 10], "fare"] = ["twelve", "1,5", "1d", "0x1p3"]
    spark_source, duck_source = sources(df, schema(), "csv")
    with pytest.raises(DataError) as caught:
        spark_source.count_tables([("fare",)])
    text = str(caught.value)
    assert (
        "column 'fare', row 4 (0-based" in text and "cannot cast to a number: 'twelve' (4 such rows)" in text
    )
    with pytest.raises(DataError, match=r"cannot cast to a number: 'twelve' \(4 such rows\)"):
        duck_source.count_tables([("fare",)])


def test_schema_errors(spark: Any, sources: Callable[..., Any], tmp_path: Path) -> None:
    spark_source, _ = sources(frame(10).rename(columns={"country": "Country"}), schema())
    with pytest.raises(
        SchemaError, match=r"column 'country' of the schema is missing.*did you mean 'Country'"
    ):
        spark_source.check_schema()
    spark_source, _ = sources(frame(10).assign(age=pd.Timestamp("2020-01-01")), schema())
    with pytest.raises(SchemaError, match=r"column 'age' has type TIMESTAMP.*cannot be cast"):
        spark_source.check_schema()
    with pytest.raises(NotFound, match="nope.parquet"):
        open_source(spark_spec(tmp_path / "nope.parquet"), schema())


def test_empty_table(sources: Callable[..., Any]) -> None:
    spark_source, _ = sources(frame(10).iloc[:0], schema())
    spark_source.check_schema()
    assert spark_source.row_count() == 0
    with pytest.raises(DataError, match="empty"):
        spark_source.count_tables([("age",)])
    assert not spark_source.validation_report()["ok"]


def test_catalog_table(spark: Any, tmp_path: Path) -> None:
    """A table of the session's catalog (here a temporary view over Parquet), and a missing one."""
    data = frame(200, seed=5)
    data.loc[7, "segment"] = "zz"
    spark.read.parquet(str(write_parquet(data, tmp_path / "t.parquet"))).createOrReplaceTempView("party_t")
    config = {"kind": "spark", "table": "party_t", "master": MASTER}
    lenient = schema(segment={"policy": {"unknown_category": "other"}})
    with open_source(SourceSpec.from_config(config), lenient) as ok:
        assert ok.name == f"spark table party_t ({MASTER})"
        check_source(ok, data)
    with open_source(SourceSpec.from_config(config), schema()) as strict, pytest.raises(DataError) as caught:
        strict.count_tables([("age",)])
    assert "row 7 (0-based, in the order Spark reads the table): unknown category 'zz'" in str(caught.value)
    with pytest.raises(NotFound, match="no_such_table"):
        open_source(SourceSpec.from_config({**config, "table": "no_such_table"}), schema())


def test_spark_spec_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SourceSpec.from_config({"kind": "spark", "path": "data/t.csv", "delimiter": ";"}, tmp_path)
    assert spec.kind == "spark" and spec.spark is not None
    assert spec.spark.location == str((tmp_path / "data/t.csv").resolve()) and spec.spark.format == "csv"
    assert spec.spark.master == "local[*]" and spec.spark.delimiter == ";"
    uri = "s3a://bucket/sales/customers"
    spec = SourceSpec.from_config({"path": uri, "format": "delta", "master": "spark://h:7077"}, tmp_path)
    assert spec.spark == SparkSettings(location=uri, format="delta", master="spark://h:7077")
    token_url = "sc://adb-1.azuredatabricks.net:443/;token=dapiSECRET;x-databricks-cluster-id=0101"
    monkeypatch.setenv("DBX_CONNECT", token_url)
    config = {"table": "main.sales.customers", "master_env": "DBX_CONNECT", "conf": {"spark.x.y": True}}
    spec = SourceSpec.from_config(config)
    assert spec.spark is not None and spec.spark.remote and spec.spark.conf == (("spark.x.y", "true"),)
    assert "SECRET" not in repr(spec) and "SECRET" not in describe_master(token_url)
    assert describe_master(token_url) == "sc://adb-1.azuredatabricks.net:443"
    for bad, message in (
        ({"kind": "spark"}, "either table"),
        ({"kind": "spark", "table": "t", "path": "p.parquet"}, "either table"),
        ({"kind": "spark", "table": "t", "master": "http://x"}, "spark master"),
        ({"kind": "spark", "table": "t", "format": "xls"}, "format"),
        ({"kind": "spark", "table": "t", "conf": {"executor.memory": "1g"}}, "must start with 'spark.'"),
        ({"kind": "spark", "table": "t", "master_env": "NO_SUCH_VARIABLE_X"}, "not set"),
    ):
        with pytest.raises(InvalidInput, match=message):
            SourceSpec.from_config(bad)


def test_without_pyspark_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from party.sources.spark import open_session

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(PreconditionFailed, match=r"needs pyspark \(pip install \"cleanroom\[spark\]\"\)"):
        open_session(SparkSettings(table="t"), "spark table t")


def test_party_serve_with_a_spark_source_refuses_bad_data(spark: Any, tmp_path: Path) -> None:
    """A real party process whose party.toml names a Spark source: it starts its own local Spark, reads its
    table there, and refuses to start on a rejected value with the one-line local error (exit status 2)."""
    from cleanroom_cli import local

    the_schema, data = sample_schema().to_dict(), generate(300, seed=2)
    column = next(c["name"] for c in the_schema["columns"] if c["type"] == "categorical")
    parts = {f"party{i + 1}": data.iloc[i::3].reset_index(drop=True) for i in range(3)}
    files = {}
    for pid, part in parts.items():
        files[pid] = tmp_path / f"{pid}.csv"
        part.to_csv(files[pid], index=False)  # clean: only the Spark source's table has the bad value
    parts["party2"].loc[4, column] = "NOT A CATEGORY"
    job = local.LocalJob(
        tmp_path / "out", the_schema, dict(files), "premium_upgrade", "classification", 1.0, 1e-9, 100
    )
    configs = local.prepare(job)
    lake = tmp_path / "lake" / "party2.parquet"
    lake.parent.mkdir()
    parts["party2"].to_parquet(lake, index=False)
    text = configs["party2"].read_text()
    old = next(line for line in text.splitlines() if line.startswith("source = "))
    new = (
        f'source = {{ kind = "spark", path = "{lake}", master = "local[1]", '
        f'conf = {{ "spark.driver.memory" = "512m" }} }}'
    )
    configs["party2"].write_text(text.replace(old, new))
    command = [
        sys.executable,
        "-m",
        "cleanroom_cli.main",
        "party",
        "serve",
        "--config",
        str(configs["party2"]),
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=local._env(), timeout=300)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("cleanroom:")]
    # counted from the rows the party reads through Spark (the evaluation's membership split needs them)
    assert f"column {column!r}, row 4" in line
    assert "unknown category 'NOT A CATEGORY' (1 such rows)" in line


def test_party_toml_keeps_a_cluster_uri_and_resolves_a_local_path(tmp_path: Path) -> None:
    """party.toml paths are relative to the file, but a URI the cluster reads (s3a://, dbfs:/) is not a
    local path and reaches the spark source as written."""
    from test_ops_config import PARTY_TOML

    from party.config import PartyConfig
    from party.run import source_spec

    for name in ("ca.pem", "a.pem", "a.key", "a.ed25519", "plan.toml", "schema.json"):
        (tmp_path / name).write_text("")
    for path, expected in (
        ("s3a://lake/sales/customers/", "s3a://lake/sales/customers/"),
        ("dbfs:/mnt/lake/customers", "dbfs:/mnt/lake/customers"),
        ("lake/customers.parquet", str((tmp_path / "lake/customers.parquet").resolve())),
    ):
        entry = f'source = {{ kind = "spark", path = "{path}", master = "spark://h:7077" }}'
        (tmp_path / "party.toml").write_text(PARTY_TOML.replace('source = "a.csv"', entry))
        spec = source_spec(PartyConfig.load(tmp_path / "party.toml").source)
        assert spec.spark is not None and spec.spark.location == expected, path


def test_malformed_csv_is_an_error_naming_the_file(sources: Callable[..., Any], tmp_path: Path) -> None:
    spark_source, _ = sources(frame(20), schema(), "csv")
    path = Path(spark_source.settings.location)  # type: ignore[attr-defined]
    lines = path.read_text().splitlines()
    lines[5] += ",extra,fields"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{path.name}.*Spark query failed: .*[Mm]alformed") as caught:
        spark_source.count_tables([("age",)])
    assert "\n" not in str(caught.value) and "An error occurred while calling" not in str(caught.value)


def test_demo_with_a_spark_party(spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cleanroom demo --sources csv,parquet,spark`: a whole job (measurement rounds, evaluation, delivery)
    with real party processes, one of which reads its data through a local Spark it starts itself."""
    import json
    import tomllib

    from integration.test_mixed_sources_e2e import _check_delivered, _check_rounds_answered, _demo

    out = tmp_path / "demo"
    assert _demo(out, "csv,parquet,spark") == 0
    assert "party3 spark" in capsys.readouterr().out
    work = out / "_work"
    source = tomllib.loads((work / "party3.toml").read_text())["data"]["source"]
    assert source["kind"] == "spark" and source["master"] == "local[1]"
    assert source["path"] == "data/party3.parquet" and (work / source["path"]).is_file()
    columns = [c["name"] for c in json.loads((work / "schema.json").read_text())["columns"]]
    for pid in ("party1", "party2", "party3"):
        _check_delivered(out, pid, columns)
        _check_rounds_answered(work, pid)


def test_spark_literals_and_names_round_trip(spark: Any) -> None:
    """Spark SQL joins 'a''b' into 'ab' and reads backslashes as escapes: categories and names that contain
    quotes, backslashes or backquotes come back as written."""
    from party.sources.spark import SparkDialect

    dialect = SparkDialect()
    texts = ["O'Brien", "a\\b", "\\'", "it''s", "tab\there", "`name`", "ünïcødé"]
    items = ", ".join(f"{dialect.literal(t)} AS {dialect.ident(t)}" for t in texts)
    row = spark.sql(f"SELECT {items}").collect()[0]
    assert list(row) == texts and list(row.asDict()) == texts
