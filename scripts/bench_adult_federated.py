"""UCI Adult across 3 party processes at epsilon = 1: the whole collaboration with evaluation and the gate.

Splits `train.csv` into 3 party CSVs, runs the real multi-process collaboration (`cleanroom simulate`'s code
path: party nodes and coordinator over gRPC with mutual TLS; MST rounds, then staging, the evaluation rounds
and the release gate), and prints the combined figures from party1's report: TSTR AUC (combined over the
parties' real rows, and directly on holdout.csv with the coordinator's model), 2-way TVD, and the DCR
membership-inference score.

Usage: PYTHONPATH=. python scripts/bench_adult_federated.py [--data DIR] [--out DIR] [--epsilon 1]
       [--rows 30000] [--max-score 0.8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cleanroom.evaluation import release
from cleanroom.evaluation.model_file import ModelFile, load_model
from cleanroom.evaluation.utility import positive_scores
from cleanroom.schema import Schema
from cleanroom_cli import local

DATA = Path("/work/shared/data/adult")
PARTIES = ("party1", "party2", "party3")


def direct_auc(model: ModelFile, frame: pd.DataFrame, schema: Schema, target: str) -> float:
    """The delivered model on a CSV's rows as pandas reads them (rows with a known target)."""
    _, y = release.model_inputs(frame, target, "classification", schema.column_kinds())
    positive = release.positive_class(schema, target)
    scores = positive_scores(model, frame.loc[y.index], positive)
    return float(roc_auc_score((y == positive).to_numpy(), scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cleanroom_adult_federated"))
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=30000, help="synthetic rows")
    parser.add_argument("--max-score", type=float, default=0.8)
    args = parser.parse_args()
    if not (args.data / "train.csv").exists():
        raise SystemExit(f"{args.data} not found (pass --data)")
    schema_dict = json.loads((args.data / "schema.json").read_text())
    schema = Schema.from_dict(schema_dict)
    target = str(schema.target)
    train = pd.read_csv(args.data / "train.csv")
    order = np.random.default_rng(2026).permutation(len(train))
    shutil.rmtree(args.out / "run", ignore_errors=True)  # never read a previous run's reports
    args.out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, pd.DataFrame | Path] = {}
    for pid, rows in zip(PARTIES, np.array_split(order, len(PARTIES)), strict=True):
        path = args.out / f"{pid}-input.csv"
        train.iloc[np.sort(rows)].to_csv(path, index=False)
        parts[pid] = path
    job = local.LocalJob(
        (args.out / "run").resolve(), schema_dict, parts, target, "classification", args.epsilon, 1e-9,
        synthetic_rows=args.rows, seed=1, max_membership_inference_score=args.max_score,
    )  # fmt: skip
    started = time.perf_counter()
    status = local.run_local(job)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"collaboration failed with status {status}")
    report = json.loads((job.out / "party1" / "report.json").read_text())
    model_path = job.work / "coordinator" / "results" / "model.onnx"
    model = load_model(model_path, schema, target, "classification")
    real = report["utility"]["real_combined"]
    holdout = direct_auc(model, pd.read_csv(args.data / "holdout.csv"), schema, target)
    pooled = direct_auc(model, train, schema, target)
    fidelity = report["fidelity_combined"]["summary"]
    membership = report["evaluation"]["membership"]
    print(f"\n== Adult, 3 parties, epsilon {args.epsilon}, delta 1e-9 (wall {wall:.1f} s) ==")
    print(
        f"privacy total: rho {report['privacy_total']['rho']:.5f}, "
        f"epsilon {report['privacy_total']['epsilon']:.3f}"
    )
    for stage in report["privacy_spent"]:
        print(f"  {stage['name']:44s} rho {stage['rho']:.5f}  epsilon alone {stage['epsilon']:.3f}")
    print(
        f"TSTR AUC combined (noisy, parties' real rows) {real['auc']:.4f} "
        f"(noise sd {real['auc_noise_sd']:.4f}, "
        f"binning bound {real['auc_binning_bound']:.4f}); direct on pooled train.csv {pooled:.4f}; "
        f"on holdout.csv {holdout:.4f}; synthetic holdout {report['utility']['synthetic_holdout']['auc']:.4f}"
    )
    print(f"accuracy {real['accuracy']:.4f}, F1 {real['f1']:.4f}")
    print(f"delivered model: {model_path.name}, {model_path.stat().st_size:,} bytes")
    print(
        f"TVD combined: mean 1-way {fidelity['mean_one_way_tvd']:.4f}, "
        f"max 1-way {fidelity['max_one_way_tvd']:.4f}"
        f"; mean 2-way {fidelity['mean_two_way_tvd']:.4f}, max 2-way {fidelity['max_two_way_tvd']:.4f}"
    )
    for name, figures in membership.items():
        local_scores = [
            a["local_score"]
            for pid in PARTIES
            for a in (json.loads((job.out / pid / "report.json").read_text()).get("local_detail") or {}).get(
                "attacks", []
            )
            if a["attack"] == name
        ]
        exact = ", ".join(f"{s:.3f}" for s in local_scores)
        print(
            f"attack {name:14s} combined {figures['score']:.4f} (noise sd {figures['noise_sd']:.4f}); "
            f"per party {exact}"
        )
    print(f"gate: {report['release']['reason']}")
    print(f"reports: {job.out}/<party>/report.html")


if __name__ == "__main__":
    main()
