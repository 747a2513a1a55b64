"""Adult-like mixed data and trained ONNX models for the model-file tests (fixed seeds)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cleanroom.evaluation import model_export
from cleanroom.evaluation.model_file import ModelSpec, feature_matrix
from cleanroom.evaluation.release import model_inputs
from cleanroom.schema import Schema

EDUCATION = [str(i) for i in range(1, 17)]  # int-looking categories, as Adult's education_num
WORKCLASS = ["Private", "State-gov", "Self-emp", "?"]
RATINGS = ["0.5", "1.5", "2.50"]  # float-looking, one written with a trailing zero

MIXED_SCHEMA: dict[str, Any] = {
    "columns": [
        {"name": "id", "type": "identifier"},
        {"name": "age", "type": "numerical", "lower": 17, "upper": 90, "n_bins": 8, "integer": True},
        {"name": "workclass", "type": "categorical", "categories": WORKCLASS,
         "policy": {"unknown_category": "other"}},
        {"name": "education_num", "type": "categorical", "categories": EDUCATION},
        {"name": "married", "type": "categorical", "categories": ["true", "false"]},
        {"name": "rating", "type": "categorical", "categories": RATINGS},
        {"name": "hours", "type": "numerical", "lower": 1, "upper": 99, "n_bins": 5,
         "policy": {"out_of_range": "missing"}},
        {"name": "gain", "type": "numerical", "lower": 0, "upper": 100000, "n_bins": 10},
        {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]},
        {"name": "grade", "type": "categorical", "categories": ["low", "mid", "high"]},
        {"name": "spend", "type": "numerical", "lower": 0, "upper": 5000, "n_bins": 10},
    ],
    "policy": {"unknown_category": "missing"},
}  # fmt: skip


def mixed_schema() -> Schema:
    return Schema.from_dict(MIXED_SCHEMA)


def mixed_frame(n_rows: int, seed: int, unseen: bool = False) -> pd.DataFrame:
    """Rows as synthetic data holds them (category strings, NaN for missing); targets depend on the features.

    `unseen`: some categorical cells hold values outside the schema (unseen categories).
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 91, n_rows).astype(float)
    education = rng.integers(1, 17, n_rows)
    hours = np.round(rng.normal(40, 12, n_rows), 1)
    hours[rng.random(n_rows) < 0.05] = 120.0  # out of range: becomes missing
    gain = np.where(rng.random(n_rows) < 0.8, 0.0, rng.exponential(8000, n_rows))
    married = rng.random(n_rows) < 0.5
    logit = 0.04 * (age - 40) + 0.3 * (education - 9) + 1.2 * married + gain / 20000 - 1.0
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n_rows)],
            "age": age,
            "workclass": rng.choice(WORKCLASS, n_rows).astype(object),
            "education_num": education.astype(str).astype(object),
            "married": np.where(married, "true", "false").astype(object),
            "rating": rng.choice(RATINGS, n_rows).astype(object),
            "hours": hours,
            "gain": gain,
            "income": np.where(rng.random(n_rows) < 1 / (1 + np.exp(-logit)), ">50K", "<=50K").astype(object),
            "grade": np.array(["low", "mid", "high"])[np.clip((logit + 2.5).astype(int) // 2, 0, 2)],
            "spend": np.clip(100 * education + 500 * married + rng.normal(0, 200, n_rows), 0, 5000),
        }
    )
    for column in ("age", "workclass", "education_num", "married", "hours", "gain", "income", "spend"):
        frame.loc[rng.random(n_rows) < 0.04, column] = np.nan  # missing everywhere, also in targets
    if unseen:
        frame.loc[rng.random(n_rows) < 0.05, "workclass"] = "Never-seen"
        frame.loc[rng.random(n_rows) < 0.05, "education_num"] = "17"
        frame.loc[rng.random(n_rows) < 0.05, "rating"] = "9.5"
    return frame


def train(
    frame: pd.DataFrame, schema: Schema, target: str, task: str, seed: int = 0
) -> tuple[Any, ModelSpec]:
    """The coordinator's training path on `frame` (rows with a known target)."""
    spec = ModelSpec.for_schema(schema, target, task)
    _, y = model_inputs(frame, target, task, schema.column_kinds())
    x = feature_matrix(frame.loc[y.index], spec)
    return model_export.train_model(x, y, spec, seed)


def exported(frame: pd.DataFrame, schema: Schema, target: str, task: str) -> tuple[Any, ModelSpec, bytes]:
    estimator, spec = train(frame, schema, target, task)
    return estimator, spec, model_export.export_model(estimator, spec, feature_matrix(frame, spec)[:500])
