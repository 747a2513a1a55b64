"""`cleanroom demo --sources parquet,csv,postgresql`: three parties on three engines, end to end.

Small data (3 parties x 600 rows, a few seconds). Needs a PostgreSQL server in CLEANROOM_PG_DSN
(`eval "$(bash scripts/start_postgres.sh)"`): without it the end-to-end test skips, with CI=true it fails.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from cleanroom.audit import read_entries, verify
from cleanroom_cli.local_sources import PG_ENV, demo_table
from cleanroom_cli.main import main
from party.config import PartyConfig
from party.sources.loading import drop_postgres_table
from tests.test_sources_support import pg_dsn

ROWS_PER_PARTY = 600
KINDS = {"party1": "parquet", "party2": "csv", "party3": "postgresql"}


def _demo(out: Path, sources: str) -> int:
    argv = ["demo", "--parties", "3", "--rows", str(ROWS_PER_PARTY), "--out", str(out)]
    argv += ["--max-membership-inference-score", "1"]  # tiny data: attack scores are mostly noise
    return main([*argv, "--seed", "5", "--sources", sources])


def _table_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # table name is ours, not input
    assert row is not None
    return int(row[0])


def _check_config_source(work: Path, pid: str, kind: str) -> None:
    source = tomllib.loads((work / f"{pid}.toml").read_text())["data"]["source"]
    if kind == "postgresql":
        assert source == {"url_env": PG_ENV, "table": demo_table(pid)}
        assert not list((work / "data").glob(f"{pid}.*"))  # its rows live only in the database
    else:
        assert source == f"data/{pid}.{kind}"
        assert (work / source).is_file()


def _check_delivered(out: Path, pid: str, columns: list[str]) -> None:
    folder = out / pid
    assert (folder / "model.onnx").stat().st_size > 0
    synthetic = pd.read_csv(folder / "synthetic.csv")
    assert len(synthetic) > 0
    assert list(synthetic.columns) == columns


def _check_rounds_answered(work: Path, pid: str) -> None:
    log = PartyConfig.load(work / f"{pid}.toml").audit_log
    assert log is not None and verify(log).ok
    entries = read_entries(log)
    measured = [e for e in entries if e["event"] == "measure" and e["outcome"] == "answered"]
    # the synthesizer's rounds (as the coordinator recorded them), then utility, fidelity and DCR-attack
    synthesis = json.loads((work / "coordinator" / "job.json").read_text())["rounds"]
    assert len(synthesis) >= 3
    assert sorted(e["round"] for e in measured) == list(range(len(synthesis) + 3))
    assert all(float(e["rho_charged"]) > 0 for e in measured)
    assert any(e["event"] == "receive_results" and e["outcome"] == "answered" for e in entries)
    assert not [e for e in entries if e["outcome"] == "refused"]


def test_demo_with_parquet_csv_and_postgresql_parties(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = pg_dsn()
    out = tmp_path / "demo"
    try:
        assert _demo(out, ",".join(KINDS.values())) == 0
        printed = capsys.readouterr().out
        assert _table_rows(dsn, demo_table("party3")) == ROWS_PER_PARTY
        work = out / "_work"
        columns = [c["name"] for c in json.loads((work / "schema.json").read_text())["columns"]]
        for pid, kind in KINDS.items():
            assert f"{pid} {kind}" in printed
            _check_config_source(work, pid, kind)
            _check_delivered(out, pid, columns)
            _check_rounds_answered(work, pid)
    finally:
        drop_postgres_table(dsn, demo_table("party3"))


def test_postgresql_source_without_a_server_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(PG_ENV, raising=False)
    assert _demo(tmp_path / "demo", "parquet,csv,postgresql") == 2
    error = capsys.readouterr().err
    assert PG_ENV in error and 'eval "$(bash scripts/start_postgres.sh)"' in error
    assert not (tmp_path / "demo").exists()  # refused before writing anything


@pytest.mark.parametrize(
    ("sources", "message"),
    [("parquet,csv", "2 kinds for 3 parties"), ("csv,csv,mysql", "unknown kind 'mysql'")],
)
def test_bad_sources_option_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sources: str, message: str
) -> None:
    assert _demo(tmp_path / "demo", sources) == 2
    assert message in capsys.readouterr().err
