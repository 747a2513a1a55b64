"""Categories that look like booleans, numbers or missing markers, through every path of a real collaboration.

Party CSV sources (DuckDB), the coordinator's synthetic CSV, its staging and scoring at the parties, the
coordinator's synthetic-holdout metrics and delivery: a "TRUE"/"FALSE" target and "007"-like or "NA"-like
levels must come back as the same text, so the evaluation never meets an unknown category.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cleanroom.encoding import encode
from cleanroom.frames import read_frame
from cleanroom.schema import Schema
from cleanroom_cli import local

PARTIES = ("party1", "party2", "party3")
SCHEMA = {
    "columns": [
        {"name": "code", "type": "categorical", "categories": ["007", "012", "100"]},
        {"name": "region", "type": "categorical", "categories": ["NA", "None", "EU"]},
        {"name": "x", "type": "numerical", "lower": 0, "upper": 10, "n_bins": 5},
        {"name": "flag", "type": "categorical", "categories": ["FALSE", "TRUE"], "target": True},
    ]
}


def tricky_data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    code = rng.choice(["007", "012", "100"], n)
    region = rng.choice(["NA", "None", "EU"], n)
    x = rng.uniform(0, 10, n).round(2)
    signal = ((code == "007") | (x > 6)) ^ (rng.random(n) < 0.1)  # visible in the pairs with the target
    flag = np.where(signal, "TRUE", "FALSE")
    return pd.DataFrame({"code": code, "region": region, "x": x, "flag": flag})


def test_category_text_survives_sources_staging_evaluation_and_delivery(tmp_path: Path) -> None:
    frame = tricky_data(1500, seed=4)
    parts: dict[str, pd.DataFrame | Path] = {}
    for i, pid in enumerate(PARTIES):  # the parties read real CSV files (DuckDB source)
        path = tmp_path / f"{pid}.csv"
        frame.iloc[i::3].to_csv(path, index=False)
        parts[pid] = path
    job = local.LocalJob(
        tmp_path / "run", SCHEMA, parts, "flag", "classification", 7.5, 1e-9, synthetic_rows=1200,
        seed=2, max_membership_inference_score=1.0,
    )  # fmt: skip
    assert local.run_local(job) == 0
    schema = Schema.from_dict(SCHEMA)
    delivered = read_frame(job.out / "party1" / "synthetic.csv", schema)
    assert set(delivered["flag"]) <= {"TRUE", "FALSE"} and "007" in set(delivered["code"])
    assert encode(schema, delivered).report.adjusted == 0
    report = json.loads((job.out / "party1" / "report.json").read_text())
    utility = report["utility"]
    assert utility["real_combined"]["auc"] > 0.7  # scored at the parties: their text matched the model's
    assert utility["synthetic_holdout"]["auc"] > 0.7  # the coordinator re-read its own CSV
