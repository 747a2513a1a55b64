"""Issue 6 over real processes: evaluation rounds, the release gate, the parties' reports.

Two collaborations of 3 party processes + the coordinator: one with the gate above any score (released; its
run is reused for the utility, fidelity and report assertions) and one with the gate at 0.5, below every
measured score (blocked).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cleanroom.audit import read_entries
from cleanroom.evaluation import release
from cleanroom.evaluation.model_file import load_model
from cleanroom.evaluation.report import SECTIONS
from cleanroom.evaluation.utility import positive_scores
from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli import local
from coordinator.evaluation import HOLDOUT_STAGE
from party.config import PartyConfig
from party.run import total_rho

ROWS_PER_PARTY = 600
PARTIES = ("party1", "party2", "party3")


def _run(out: Path, epsilon: float, max_score: float) -> local.LocalJob:
    schema, frame, target, task = demo_dataset(3 * ROWS_PER_PARTY, seed=11)
    parts = {pid: frame.iloc[i::3].reset_index(drop=True) for i, pid in enumerate(PARTIES)}
    job = local.LocalJob(
        out, schema, parts, target, task, epsilon, 1e-9, synthetic_rows=1500, seed=5,
        max_membership_inference_score=max_score,
    )  # fmt: skip
    assert local.run_local(job) == 0
    return job


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> local.LocalJob:
    return _run(tmp_path_factory.mktemp("released") / "run", epsilon=10.0, max_score=1.0)


@pytest.fixture(scope="module")
def blocked(tmp_path_factory: pytest.TempPathFactory) -> local.LocalJob:
    return _run(tmp_path_factory.mktemp("blocked") / "run", epsilon=1.0, max_score=0.5)


def _folder(job: local.LocalJob, pid: str) -> Path:
    """Delivered results land flat in the party's output folder, stamped for retention."""
    folder = job.out / pid
    assert (folder / ".delivered.json").is_file()
    return folder


def _report(job: local.LocalJob, pid: str) -> dict[str, Any]:
    return json.loads((_folder(job, pid) / "report.json").read_text())  # type: ignore[no-any-return]


def _ledger_spent(job: local.LocalJob, pid: str) -> float:
    config = PartyConfig.load(job.work / f"{pid}.toml")
    return float(Ledger(config.ledger, total_rho(config)).spent())


def _released_files(job: local.LocalJob) -> list[Path]:
    """Synthetic data or models anywhere except the coordinator's own folder."""
    found = [*job.out.rglob("synthetic.*"), *job.out.rglob("model.*")]
    coordinator = job.work / "coordinator"
    return [p for p in found if coordinator not in p.parents]


def test_gate_below_the_score_blocks_the_release_everywhere(blocked: local.LocalJob) -> None:
    assert _released_files(blocked) == []
    assert not any((blocked.work / "state").glob("*-staged/*/*"))  # staged copies deleted
    for pid in PARTIES:
        report = _report(blocked, pid)
        assert report["release"]["released"] is False
        scores = report["release"]["scores"]
        assert max(scores.values()) > 0.5
        assert "release blocked" in report["release"]["reason"]
        html = (_folder(blocked, pid) / "report.html").read_text()
        assert "Not released" in html and "above the limit 0.500" in html  # the gate in words


def test_gate_above_the_score_releases(released: local.LocalJob) -> None:
    for pid in PARTIES:
        names = sorted(p.name for p in _folder(released, pid).iterdir() if not p.name.startswith("."))
        assert names == ["model.onnx", "report.html", "report.json", "synthetic.csv"]
        report = _report(released, pid)
        assert report["release"]["released"] is True
        assert report["evaluation"]["gate"]["released"] is True
        assert set(report["release"]["scores"]) == {"dcr"}
    assert not any((released.work / "state").glob("*-staged/*/*"))


def test_combined_tstr_auc_matches_the_pooled_real_data(released: local.LocalJob) -> None:
    report = _report(released, "party1")
    real = report["utility"]["real_combined"]
    pooled = pd.concat([released.parts[pid] for pid in PARTIES], ignore_index=True)  # type: ignore[list-item]
    schema = Schema.from_dict(released.schema)
    _, y = release.model_inputs(pooled, released.target, released.task, schema.column_kinds())
    x = pooled.loc[y.index]
    model = load_model(_folder(released, "party1") / "model.onnx", schema, released.target, released.task)
    positive = release.positive_class(schema, released.target)
    direct = roc_auc_score((y == positive).to_numpy(), positive_scores(model, x, positive))
    bound = real["auc_binning_bound"] + 4 * real["auc_noise_sd"] + 0.005
    assert math.isfinite(real["auc"]) and real["auc_noise_sd"] > 0
    assert abs(real["auc"] - direct) <= bound, (real, direct)
    assert abs(real["n"] - len(x)) < 50  # noisy count of the pooled rows with a known target
    holdout = report["utility"]["synthetic_holdout"]
    assert 0.5 < holdout["auc"] <= 1.0


def test_reports_have_every_section_decodable_plots_and_budget(released: local.LocalJob) -> None:
    for pid in PARTIES:
        html = (_folder(released, pid) / "report.html").read_text()
        for section in SECTIONS:
            assert f'id="{section}"' in html, section
        assert not re.search(r"(src|href)=\"(http|//)", html)
        charts = re.findall(r"<svg .*?</svg>", html)
        assert len(charts) >= 2
        for chart in charts:
            ET.fromstring(chart)  # well-formed
        report = _report(released, pid)
        stages = [s["name"] for s in report["privacy_spent"]]
        assert any(s.startswith("synthesis") for s in stages)
        assert {f"evaluation: {s}" for s in release.STATISTICS} <= set(stages)
        total = sum(s["rho"] for s in report["privacy_spent"])
        assert report["privacy_total"]["epsilon"] <= 10.0 + 1e-6
        assert math.isclose(total, report["privacy_total"]["rho"], rel_tol=1e-9)
        assert HOLDOUT_STAGE in stages  # each party's noisy row count, charged in its ledger
        assert math.isclose(_ledger_spent(released, pid), total, rel_tol=1e-9)  # every charge is reported
        assert report["local_detail"]["real_rows"] == ROWS_PER_PARTY
        fidelity = report["fidelity_combined"]["summary"]
        assert 0 <= fidelity["mean_one_way_tvd"] <= 1


def test_released_files_are_the_evaluated_copies_and_are_not_sent_twice(released: local.LocalJob) -> None:
    """Each party copies the synthetic data and model it evaluated (same digest) instead of receiving them
    again: the delivered bytes equal the coordinator's, and the coordinator sent them once (at staging)."""
    from cleanroom.audit import read_entries
    from party.config import PartyConfig

    results = released.work / "coordinator" / "results"
    names = ("synthetic.csv", "model.onnx")
    staged_bytes = sum((results / name).stat().st_size for name in names)
    log = (released.work / "coordinator" / "job-log.jsonl").read_text().splitlines()
    finished = [json.loads(line) for line in log if '"job_finished"' in line][-1]
    for pid in PARTIES:
        for name in names:
            assert (_folder(released, pid) / name).read_bytes() == (results / name).read_bytes()
        assert staged_bytes < finished["bytes_sent"][pid] < 1.5 * staged_bytes  # twice without adoption
        audit = PartyConfig.load(released.work / f"{pid}.toml").audit_log
        assert audit is not None
        received = [e for e in read_entries(audit) if e["event"] == "receive_results"]
        assert received[-1]["outcome"] == "answered"
        assert sorted(received[-1]["detail"]["from_staged_copy"]) == sorted(names)


def test_every_round_took_back_the_draw_kept_for_the_tolerated_dropout(released: local.LocalJob) -> None:
    """Nobody dropped out, so each party removed 1 of its 3 draws in every round it answered (over real gRPC),
    and the coordinator's variance for each synthesis round is the 2 kept draws of 3 parties."""
    for pid in PARTIES:
        entries = read_entries(released.work / "state" / f"{pid}-audit.jsonl")
        answered = [e for e in entries if e["event"] == "measure" and e["outcome"] == "answered"]
        removed = [e for e in entries if e["event"] == "remove_noise"]
        assert len(answered) >= 8 and len(removed) == len(answered)
        assert all(e["detail"] == {"survivors": 3, "draws_removed": 1, "draws_kept": 2} for e in removed)
    record = json.loads((released.work / "coordinator" / "job.json").read_text())
    for spec in record["rounds"]:
        assert spec["survivors"] == list(PARTIES)
        assert spec["noise_sd"] ** 2 == pytest.approx(2 * float(Fraction(spec["sigma_party2"])), rel=1e-9)
