"""One party's bad data, with real processes: the node refuses to start and nothing is spent anywhere.

The full problem (column, row, value) is for the party's own terminal and log only; what a coordinator or
another party could see names at most the party and the column.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom_cli import local
from party.config import PartyConfig
from party.run import total_rho

SECRET = "PATIENT Jane Doe HIV+ ssn 078-05-1120"


def _parts(tmp_path: Path) -> tuple[dict, dict[str, Path], str]:
    schema, frame, _, _ = demo_dataset(150, seed=2)
    column = next(c["name"] for c in schema["columns"] if c["type"] == "categorical")
    files = {}
    for i in range(3):
        part = frame.iloc[i::3].reset_index(drop=True)
        if i == 1:
            part.loc[4, column] = SECRET
        files[f"party{i + 1}"] = tmp_path / f"party{i + 1}.csv"
        part.to_csv(files[f"party{i + 1}"], index=False)
    return schema, files, column


def test_party_serve_refuses_bad_data_in_one_line(tmp_path: Path) -> None:
    schema, files, column = _parts(tmp_path)
    parts: dict = dict(files)
    job = local.LocalJob(tmp_path / "out", schema, parts, "premium_upgrade", "classification", 1.0, 1e-9, 100)
    configs = local.prepare(job)
    command = [sys.executable, "-m", "cleanroom_cli.main", "party", "serve", "--config"]
    command.append(str(configs["party2"]))
    run = subprocess.run(command, capture_output=True, text=True, env=local._env(), timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert f"column {column!r}" in lines[0] and "row 4" in lines[0] and SECRET in lines[0]  # local eyes only
    config = PartyConfig.load(configs["party2"])
    assert not config.ledger.exists() or Ledger(config.ledger, total_rho(config)).entries() == []


def test_simulate_with_one_bad_party_stops_before_spending(tmp_path: Path) -> None:
    schema, files, column = _parts(tmp_path)
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(schema))
    out = tmp_path / "sim"
    command = [sys.executable, "-m", "cleanroom_cli.main", "simulate", "--schema", str(schema_path)]
    for party, path in files.items():
        command += ["--party", f"{party}={path}"]
    command += ["--target", "premium_upgrade", "--task", "classification", "--epsilon", "1"]
    command += ["--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, env=local._env(), timeout=600)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("cleanroom:")]
    assert "party party2 refused to start, nothing was spent" in line and repr(column) in line
    for party in ("party1", "party3"):
        config = PartyConfig.load(out / "_work" / f"{party}.toml")
        assert not config.ledger.exists() or Ledger(config.ledger, total_rho(config)).entries() == []
    assert not (out / "party1").exists() or not any((out / "party1").iterdir())
