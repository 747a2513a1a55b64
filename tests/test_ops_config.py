"""Configuration mistakes give one clear line and exit 2; the plan's documented `max_table_cells` works."""

from __future__ import annotations

from pathlib import Path

import pytest
from governance_fixtures import write_plan

from cleanroom.errors import InvalidInput, PermissionDenied
from cleanroom.plan import Plan
from cleanroom.schema import Schema
from cleanroom_cli.main import main
from party.node import PartyNode

PARTY_TOML = """\
party_id = "a"
listen = "127.0.0.1:1"
plan = "plan.toml"
approved_plans = ["00"]

[tls]
ca = "ca.pem"
cert = "a.pem"
key = "a.key"
identity_key = "a.ed25519"

[data]
schema = "schema.json"
source = "a.csv"

[budget]
epsilon = 2.0
delta = 1e-9
ledger = "state/ledger.sqlite"
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("epsilon = 2.0", 'epsilon = "2"', "[budget] epsilon ('2') must be a number"),
        ("delta = 1e-9", "delta = true", "[budget] delta (True) must be a number"),
        ('listen = "127.0.0.1:1"', "listen = 50051", "listen (50051) must be a string"),
        ('ledger = "state/ledger.sqlite"', "ledger = 3", "[budget] ledger (3) must be a string"),
        (
            'approved_plans = ["00"]',
            'approved_plans = "00"',
            "approved_plans ('00') must be a list of strings",
        ),
        ('source = "a.csv"', 'sources = "a.csv"', "unknown field [data] sources (known: schema, source)"),
        ("[tls]", 'call_deadline_s = "fast"\n[tls]', "call_deadline_s ('fast') must be a number"),
        ("epsilon = 2.0", "epsilon = ", "cannot read party config"),  # not TOML: tomllib names the line
    ],
)
def test_bad_party_toml_exits_2_with_one_line_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    for name in ("plan.toml", "schema.json", "a.ed25519", "ca.pem", "a.pem", "a.key"):
        (tmp_path / name).write_text("")
    config = tmp_path / "party.toml"
    assert old in PARTY_TOML
    config.write_text(PARTY_TOML.replace(old, new))
    for command in ("serve", "budget"):
        assert main(["party", command, "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cleanroom: error: ") and str(config) in err, err
        assert message in err and err.count("\n") == 1, err


def test_schema_json_syntax_error_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"columns": [\n  {"name": "a",}\n]}\n')
    (tmp_path / "a.csv").write_text("a\n1\n")
    args = ["simulate", "--schema", str(schema), "--party", f"a={tmp_path / 'a.csv'}", "--party",
            f"b={tmp_path / 'a.csv'}", "--target", "a", "--task", "classification", "--epsilon", "1",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{schema}: not valid JSON" in err and "line 2 column" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # stopped before anything was written


def test_max_table_cells_is_accepted_and_validated(tmp_path: Path) -> None:
    assert Plan.load(write_plan(tmp_path).path).max_table_cells == 1_000_000  # the documented default
    assert Plan.load(write_plan(tmp_path, overrides={"max_table_cells": "3"}).path).max_table_cells == 3
    for bad, message in (("0", r"max_table_cells \(0\) must be in \[1, 8388608\]"),
                         ("9000000", r"max_table_cells \(9000000\) must be in"),
                         ('"10"', r"max_table_cells \('10'\) must be of type int")):  # fmt: skip
        path = write_plan(tmp_path, overrides={"max_table_cells": bad}).path
        with pytest.raises(InvalidInput, match=rf"{tmp_path}.*{message}"):
            Plan.load(path)


def test_the_node_enforces_the_plans_max_table_cells(tmp_path: Path) -> None:
    plan = Plan.load(write_plan(tmp_path, overrides={"max_table_cells": "3"}).path)
    schema = Schema.load(tmp_path / "schema.json")
    assert schema.domain.project(("income",)).size() <= 3
    assert schema.domain.project(("age", "income")).size() > 3
    node = PartyNode("p0", plan, plan.hash, (plan.hash,), schema, schema.hash(), None, None, None, tmp_path)
    node.check_cliques((("income",),), "round 0")
    with pytest.raises(PermissionDenied, match=r"clique \('age', 'income'\) has \d+ cells, over the cap 3"):
        node.check_cliques((("income",), ("age", "income")), "round 0")
    assert "tables <= 3 cells" in plan.describe()
