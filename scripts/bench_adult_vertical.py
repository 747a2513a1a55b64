"""UCI Adult split vertically versus horizontally on the same joined rows, at epsilon 1 (real processes).

Vertical: `train.csv` gets synthetic e-mail keys; the *demographics* party holds age, education,
education_num, marital_status, relationship, race, sex and native_country, the *work* party workclass,
fnlwgt, occupation, capital_gain, capital_loss, hours_per_week and the target income; each holds n rows of
which 80 % are at both (n = rows / 1.2, so the pool is used once). Horizontal: the true inner join (the same
joined rows) split between two parties holding every column, through `cleanroom simulate`'s code path
(with its evaluation rounds, which take 25 % of the job's budget). Both delivered models are scored on
`holdout.csv` (TSTR AUC). Skips when the data are absent.

Usage: PYTHONPATH=. python scripts/bench_adult_vertical.py [--data DIR] [--out DIR] [--epsilon 1] [--seed 0]
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
from cleanroom.evaluation.model_file import load_model
from cleanroom.evaluation.utility import positive_scores
from cleanroom.schema import Schema
from cleanroom_cli import local
from cleanroom_cli.vertical_local import vertical_job

DATA = Path("/work/shared/data/adult")
DEMOGRAPHICS = ["age", "education", "education_num", "marital_status", "relationship", "race", "sex",
                "native_country"]  # fmt: skip
WORK = ["workclass", "fnlwgt", "occupation", "capital_gain", "capital_loss", "hours_per_week", "income"]


def holdout_auc(model_path: Path, schema: Schema, holdout: pd.DataFrame) -> float:
    target = "income"
    model = load_model(model_path, schema, target, "classification")
    _, y = release.model_inputs(holdout, target, "classification", schema.column_kinds())
    positive = release.positive_class(schema, target)
    scores = positive_scores(model, holdout.loc[y.index], positive)
    return float(roc_auc_score((y == positive).to_numpy(), scores))


def split(train: pd.DataFrame, overlap: float, seed: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    pool = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    pool.insert(0, "email", [f"person{i:06d}@example.org" for i in range(len(pool))])
    n = int(len(pool) / (2 - overlap))
    shared = int(n * overlap)
    parts = {
        "demographics": pool.iloc[:n][["email", *DEMOGRAPHICS]],
        "work": pd.concat([pool.iloc[:shared], pool.iloc[n : n + n - shared]])[["email", *WORK]],
    }
    return {
        p: f.sample(frac=1.0, random_state=seed).reset_index(drop=True) for p, f in parts.items()
    }, pool.iloc[:shared].drop(columns=["email"])


def run(job: local.LocalJob) -> float:
    start = time.perf_counter()
    if local.run_local(job) != 0:
        raise SystemExit(f"run in {job.out} failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cleanroom_adult_vertical"))
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--overlap", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["vertical", "horizontal"], default=None)
    args = parser.parse_args()
    if not (args.data / "train.csv").exists():
        print(f"{args.data} not found: skipped")
        return
    base = json.loads((args.data / "schema.json").read_text())
    vertical_schema = {**base, "columns": [{"name": "email", "type": "identifier", "join_key": True},
                                           *base["columns"]]}  # fmt: skip
    train, holdout = pd.read_csv(args.data / "train.csv"), pd.read_csv(args.data / "holdout.csv")
    parts, joined = split(train, args.overlap, args.seed)
    rows = {p: len(f) for p, f in parts.items()}
    print(f"vertical parties {rows}, joined rows {len(joined)}")
    results = {}
    if args.only in (None, "vertical"):
        shutil.rmtree(args.out / "vertical", ignore_errors=True)
        out = str(args.out / "vertical")
        ns = argparse.Namespace(out=out, epsilon=args.epsilon, delta=1e-9, format="csv",
                                seed=args.seed)  # fmt: skip
        columns = {"demographics": DEMOGRAPHICS, "work": WORK}
        job = vertical_job(ns, vertical_schema, dict(parts), columns, "income", "classification",
                           max(rows.values()), len(joined))  # fmt: skip
        wall = run(job)
        auc = holdout_auc(job.out / "work" / "model.onnx", Schema.from_dict(vertical_schema), holdout)
        results["vertical"] = {"auc": auc, "wall_s": wall}
    if args.only in (None, "horizontal"):
        shutil.rmtree(args.out / "horizontal", ignore_errors=True)
        halves = {
            "party1": joined.iloc[0::2].reset_index(drop=True),
            "party2": joined.iloc[1::2].reset_index(drop=True),
        }
        where = (args.out / "horizontal").resolve()
        job = local.LocalJob(where, base, dict(halves), "income", "classification",
                             args.epsilon, 1e-9, synthetic_rows=len(joined), seed=args.seed)  # fmt: skip
        wall = run(job)
        auc = holdout_auc(job.out / "party1" / "model.onnx", Schema.from_dict(base), holdout)
        results["horizontal"] = {"auc": auc, "wall_s": wall}
    print(json.dumps(results, indent=2))
    if len(results) == 2:
        vertical, horizontal = results["vertical"]["auc"], results["horizontal"]["auc"]
        print(f"TSTR AUC vertical {vertical:.4f} vs horizontal {horizontal:.4f}"
              f" (difference {vertical - horizontal:+.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
