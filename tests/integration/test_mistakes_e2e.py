"""A new user's mistakes, run as the real `cleanroom simulate` process: each stops before anything starts.

Every mistake exits 2 with one line on stderr (no traceback, nothing on stdout), starts no node, and leaves
the ledgers of an earlier run byte for byte as they were (issue 13, item 1). Ctrl-C in the middle of a run
says what was spent and what is left staged, exits 130 and leaves no node running (item 5).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom_cli import local
from party.config import PartyConfig
from party.run import total_rho

TARGET, TASK = "premium_upgrade", "classification"


def _files(tmp_path: Path, rows_per_party: int = 60) -> tuple[Path, dict[str, Path]]:
    schema, frame, _, _ = demo_dataset(3 * rows_per_party, seed=4)
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(schema, indent=2))
    files = {}
    for i in range(3):
        files[f"p{i + 1}"] = tmp_path / f"p{i + 1}.csv"
        frame.iloc[i::3].to_csv(files[f"p{i + 1}"], index=False)
    return schema_path, files


def _simulate(
    schema: Path, files: dict[str, Path], out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cleanroom_cli.main", "simulate", "--schema", str(schema)]
    for party, path in files.items():
        command += ["--party", f"{party}={path}"]
    command += ["--out", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=local._env(), cwd=out.parent)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def earlier_run(tmp_path: Path) -> tuple[Path, dict[str, Path], Path]:
    """Files of a collaboration whose `<out>/_work` holds each party's ledger with one charge on it."""
    schema, files = _files(tmp_path)
    out = tmp_path / "sim"
    job = local.LocalJob(out, json.loads(schema.read_text()), dict(files), TARGET, TASK, 1.0, 1e-9, 0)
    for pid, config_path in local.prepare(job).items():
        config = PartyConfig.load(config_path)
        Ledger(config.ledger, total_rho(config)).reserve(f"earlier/{pid}", 0.001, "0" * 64, "earlier-job")
    return schema, files, out


MISTAKES = {
    "target not in the schema": (
        ["--target", "salary", "--task", TASK, "--epsilon", "1"],
        "--target salary: not a column of",
    ),
    "regression on a categorical target": (
        ["--target", "region", "--task", "regression", "--epsilon", "1"],
        "--task regression needs a numerical target, but region is categorical",
    ),
    "too few synthetic rows": (
        ["--target", TARGET, "--task", TASK, "--epsilon", "1", "--synthetic-rows", "10"],
        "--synthetic-rows 10 is too few",
    ),
    "epsilon above the noise floor": (
        ["--target", TARGET, "--task", TASK, "--epsilon", "1000"],
        "epsilon 1000 is too large for this plan",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_exits_2_in_one_line_and_spends_nothing(
    mistake: str, earlier_run: tuple[Path, dict[str, Path], Path]
) -> None:
    schema, files, out = earlier_run
    before = _snapshot(out)
    args, expected = MISTAKES[mistake]
    run = _simulate(schema, files, out, *args)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in run.stderr, run.stderr
    assert run.stdout == ""  # nothing started, not even the source summary
    assert _snapshot(out) == before  # every ledger (and every other file of the earlier run) unchanged
    assert not (out / "_work" / "logs").exists()  # no node was ever started


def test_epsilon_message_gives_a_cap_that_is_accepted(
    earlier_run: tuple[Path, dict[str, Path], Path],
) -> None:
    schema, files, out = earlier_run
    run = _simulate(schema, files, out, *MISTAKES["epsilon above the noise floor"][0])
    assert "per-party noise cannot go below sigma 2" in run.stderr
    cap = float(run.stderr.rsplit("--epsilon <= ", 1)[1].split()[0])
    from cleanroom.feasibility import check_job
    from cleanroom.schema import Schema

    schema_obj = Schema.load(schema)
    common = {"target": TARGET, "task": TASK, "delta": 1e-9, "n_min": 2, "n_parties": 3}
    check_job(schema_obj, epsilon=cap, **common)  # the suggested value itself passes
    with pytest.raises(Exception, match="too large"):
        check_job(schema_obj, epsilon=cap * 1.01, **common)


def test_a_party_file_with_too_few_rows_is_named_before_anything_starts(tmp_path: Path) -> None:
    schema, files = _files(tmp_path)
    small = tmp_path / "small.csv"
    small.write_text("".join(files["p2"].read_text().splitlines(keepends=True)[:11]))  # header + 10 rows
    files["p2"] = small
    out = tmp_path / "sim"
    run = _simulate(schema, files, out, "--target", TARGET, "--task", TASK, "--epsilon", "1")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--party p2: {small} has 10 rows" in lines[0], run.stderr
    assert not out.exists()


def _children_of(work: Path) -> list[int]:
    """PIDs of running processes whose working directory is `work` (the local run's nodes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == work:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc to find the child processes")
def test_ctrl_c_reports_spending_and_stops_every_process(tmp_path: Path) -> None:
    schema, files = _files(tmp_path, rows_per_party=200)
    out = tmp_path / "sim"
    command = [sys.executable, "-m", "cleanroom_cli.main", "simulate", "--schema", str(schema)]
    for party, path in files.items():
        command += ["--party", f"{party}={path}"]
    command += ["--target", TARGET, "--task", TASK, "--epsilon", "1", "--out", str(out)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=local._env(),
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background pytest ignores it
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until the first round has been charged and answered
        seen.append(line)
        if "round_0:" in line:
            break
    assert any("round_0:" in line for line in seen), "".join(seen)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted; every party node and the coordinator were stopped" in err
    assert "spent (each party's ledger): p1 rho " in err
    assert "left staged" in err or "nothing is left staged" in err
    assert _children_of((out / "_work").resolve()) == []
    config = PartyConfig.load(out / "_work" / "p1.toml")
    spent = float(Ledger(config.ledger, total_rho(config)).spent())
    assert f"p1 rho {spent:.6g}" in err  # the figure printed is the ledger's


def test_parties_start_in_waves_with_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 10: with more parties than the start window, nodes start in waves and the run says how far it
    got ("started 2/3 parties, 1 healthy"); never more than `start_window` are starting at once."""
    import asyncio
    import re

    schema, frame, target, task = demo_dataset(180, seed=6)
    parts: dict = {f"p{i + 1}": frame.iloc[i::3].reset_index(drop=True) for i in range(3)}
    job = local.LocalJob(
        tmp_path, schema, parts, target, task, 1.0, 1e-9, 0, start_window=1, progress_every_s=0
    )
    configs = local.prepare(job)
    procs: dict = {}
    try:
        asyncio.run(local.start_and_wait(job, configs, procs))
    finally:
        local.stop(procs)
    lines = [line for line in capsys.readouterr().out.splitlines() if "parties," in line]
    counts = [
        tuple(map(int, re.fullmatch(r"\[local\] started (\d)/3 parties, (\d) healthy", line).groups()))
        for line in lines
    ]
    assert counts[-1] == (3, 3) and len(counts) >= 3, lines
    assert counts == sorted(counts)  # progress only moves forward
    assert all(started - healthy <= 1 for started, healthy in counts)  # one wave of 1 at a time
