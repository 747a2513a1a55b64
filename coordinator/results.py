"""After the last round: sample the synthetic dataset, train the model, write the result files and report.

The model is scikit-learn's HistGradientBoosting on the schema's encoding of the features, written as
`model.onnx` (`cleanroom.evaluation.model_export`; a data format, never pickle or skops). The report states
the privacy spent (rho and (epsilon, delta)), rows, columns, timings.
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
from cleanroom.evaluation import model_export
from cleanroom.evaluation.model_file import MODEL_FILE_NAME, ModelSpec, feature_matrix
from cleanroom.evaluation.release import model_inputs, synthetic_holdout_start

CHECK_ROWS = 5000  # training rows on which the ONNX file must reproduce scikit-learn's outputs


def synthetic_rows(config: Any, measurements: list[Any]) -> int:
    rows = int(getattr(config.plan, "synthetic_rows", 0) or 0)
    if rows > 0:
        return rows
    one_way = [m for m in measurements if len(m.clique) == 1]
    estimates = [float(np.sum(m.noisy_values)) for m in one_way]
    return max(1, int(round(float(np.median(estimates))))) if estimates else 1000


def training_data(
    frame: pd.DataFrame, target: str, task: str, schema: Any
) -> tuple[np.ndarray, pd.Series, ModelSpec]:
    """The encoded training matrix, labels and spec (rows with a known target)."""
    spec = ModelSpec.for_schema(schema, target, task)
    _, y = model_inputs(frame, target, task, schema.column_kinds())
    return feature_matrix(frame.loc[y.index], spec), y, spec


def train_model(
    frame: pd.DataFrame, target: str, task: str, schema: Any, seed: int | None, threads: int = 1
) -> tuple[Any, ModelSpec, np.ndarray]:
    """The fitted model, its spec (with class labels) and its encoded training matrix."""
    x, y, spec = training_data(frame, target, task, schema)
    estimator, spec = model_export.train_model(x, y, spec, seed, threads)
    return estimator, spec, x


def model_bytes(frame: pd.DataFrame, config: Any, trainer: Any = None) -> bytes:
    """model.onnx of the training rows: trained in `trainer`'s worker process if given, else here (the
    same `model_export.train_and_export`, so the same bytes)."""
    plan = config.plan
    x, y, spec = training_data(frame, str(plan.target), str(plan.task), config.schema)
    arguments = (x, y, spec, config.seed, config.train_threads, x[:CHECK_ROWS])
    data, _ = trainer.train(*arguments) if trainer is not None else model_export.train_and_export(*arguments)
    return bytes(data)


def build_results(
    config: Any,
    model: Any,
    measurements: list[Any],
    record: Any,
    rng: np.random.Generator,
    trainer: Any = None,
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
        # rows [0, start) train the model; the rest are the synthetic holdout
        training_rows = frame.iloc[: synthetic_holdout_start(len(frame))].reset_index(drop=True)
        files[MODEL_FILE_NAME] = out / MODEL_FILE_NAME
        files[MODEL_FILE_NAME].write_bytes(model_bytes(training_rows, config, trainer))
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
