"""A whole job over real processes and mutual TLS with a sparse masking graph (SecAgg+): five party nodes,
each pairing masks with only 2 neighbours (the plan's `masking_neighbours`), deliver the same kind of results
as the complete graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cleanroom.plan import Plan
from cleanroom.sample_data import demo_dataset
from cleanroom_cli import local

PARTIES = 5
ROWS_PER_PARTY = 300


def test_a_job_with_a_sparse_masking_graph_delivers_results(tmp_path: Path) -> None:
    schema, frame, target, task = demo_dataset(PARTIES * ROWS_PER_PARTY, seed=11)
    parts = {f"party{i + 1}": frame.iloc[i::PARTIES].reset_index(drop=True) for i in range(PARTIES)}
    job = local.LocalJob(
        tmp_path / "run", schema, parts, target, task, 1.0, 1e-9, synthetic_rows=400, seed=5,
        receivers=["party1"], max_membership_inference_score=1.0, masking_neighbours=2,
    )  # fmt: skip
    assert local.run_local(job) == 0
    plan = Plan.load(job.work / "collaboration.toml")
    manifest = plan.secagg_manifest(plan.schema_hash)
    assert manifest.sparse and manifest.neighbours == 2 and manifest.share_threshold == 2
    record = json.loads((job.work / "coordinator" / "job.json").read_text())
    assert record["masking_graph"] == {"neighbours": 2, "share_threshold": 2, "sparse": True}
    assert record["rounds"] and all(r["survivors"] == list(parts) for r in record["rounds"])
    synthetic = pd.read_csv(job.out / "party1" / "synthetic.csv")
    assert len(synthetic) == 400 and list(synthetic.columns) == [c["name"] for c in job.schema["columns"]]
    assert set(record["uploads"]) == set(parts)
