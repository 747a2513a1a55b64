"""After the last round: sample the synthetic dataset, train the model, write the result files and report.

The model is a scikit-learn pipeline (ordinal encoding of categorical columns + HistGradientBoosting) saved
with skops, never pickle. The report states the privacy spent (rho and (epsilon, delta)), rows, columns,
timings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.accounting import cdp_eps
from cleanroom.encoding import decode
from cleanroom.errors import DataError
from cleanroom.evaluation.release import model_inputs, synthetic_holdout_start


def synthetic_rows(config: Any, measurements: list[Any]) -> int:
    rows = int(getattr(config.plan, "synthetic_rows", 0) or 0)
    if rows > 0:
        return rows
    one_way = [m for m in measurements if len(m.clique) == 1]
    estimates = [float(np.sum(m.noisy_values)) for m in one_way]
    return max(1, int(round(float(np.median(estimates))))) if estimates else 1000


def train_model(
    frame: pd.DataFrame, target: str, task: str, kinds: dict[str, str], seed: int | None, threads: int = 1
) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    features = [c for c, k in kinds.items() if c != target and k != "identifier"]
    categorical = [c for c in features if kinds[c] == "categorical"]
    numerical = [c for c in features if kinds[c] == "numerical"]
    encode = ColumnTransformer(
        [
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
                ),
                categorical,
            ),
            ("num", "passthrough", numerical),
        ]
    )
    n_cat = len(categorical)
    mask = [True] * n_cat + [False] * len(numerical)
    if task == "classification":
        estimator: Any = HistGradientBoostingClassifier(categorical_features=mask or None, random_state=seed)
    else:
        estimator = HistGradientBoostingRegressor(categorical_features=mask or None, random_state=seed)
    x, y = model_inputs(frame, target, task, kinds)  # the parties prepare their rows the same way
    if len(x) == 0:
        raise DataError(f"synthetic data: every value of the target {target!r} is missing; no model trained")
    model = Pipeline([("encode", encode), ("model", estimator)])
    from threadpoolctl import threadpool_limits

    # OpenMP oversubscription on a shared machine: 1 thread trained 90k rows in 2.2 s, the default 8.7 s.
    with threadpool_limits(limits=threads):
        model.fit(x, y)
    return model


def build_results(
    config: Any, model: Any, measurements: list[Any], record: Any, rng: np.random.Generator
) -> dict[str, Path]:
    start = time.perf_counter()
    plan, schema = config.plan, config.schema
    n_rows = synthetic_rows(config, measurements)
    codes = model.sample(n_rows, rng)
    frame = decode(schema, codes, rng)
    record.timings["sample"] = time.perf_counter() - start
    out = config.out / "results"
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    formats = list(getattr(plan, "result_formats", ["csv"]) or ["csv"])
    if "parquet" in formats:
        files["synthetic.parquet"] = out / "synthetic.parquet"
        frame.to_parquet(files["synthetic.parquet"], index=False)
    if "csv" in formats or not files:
        files["synthetic.csv"] = out / "synthetic.csv"
        frame.to_csv(files["synthetic.csv"], index=False)
    target = getattr(plan, "target", None)
    if target:
        start = time.perf_counter()
        import skops.io as sio

        training_rows = frame.iloc[: synthetic_holdout_start(len(frame))]  # the rest: synthetic holdout
        trained = train_model(
            training_rows,
            target,
            str(plan.task),
            schema.column_kinds(),
            config.seed,
            config.train_threads,
        )
        files["model.skops"] = out / "model.skops"
        sio.dump(trained, files["model.skops"])
        record.timings["train"] = time.perf_counter() - start
    files["report.json"] = out / "report.json"
    files["report.json"].write_text(json.dumps(report(config, record, frame), indent=2))
    return files


def report(config: Any, record: Any, frame: pd.DataFrame) -> dict[str, Any]:
    plan = config.plan
    delta = float(plan.delta)
    return {
        "job_id": record.job_id,
        "plan_hash": config.plan_hash,
        "collaboration_id": plan.collaboration_id,
        "privacy": {
            "rho": record.rho_spent,
            "epsilon": cdp_eps(record.rho_spent, delta) if record.rho_spent > 0 else 0.0,
            "delta": delta,
            "plan_epsilon": float(plan.epsilon),
            "noise": "distributed discrete Gaussian",
            "n_min": int(plan.n_min),
        },
        "rows": int(len(frame)),
        "columns": list(frame.columns),
        "target": getattr(plan, "target", None),
        "task": getattr(plan, "task", None),
        "rounds": record.rounds,
        "timings_s": dict(record.timings),
    }
