"""The README's three lines: load a delivered model.onnx and predict on a partner's CSV as pandas reads it.

The model comes from the coordinator's own training and export code (`coordinator.results.train_model`,
`model_export.export_model`) on the built-in sample data (always) and on UCI Adult (when
/work/shared/data/adult is present; the issue's failure was Adult's `education_num`, read as int).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cleanroom.evaluation import model_export
from cleanroom.evaluation.model_file import MODEL_FILE_NAME, feature_matrix
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from coordinator.results import train_model

ADULT = Path("/work/shared/data/adult")


def _deliver(
    training: pd.DataFrame, schema: Schema, target: str, task: str, folder: Path
) -> tuple[Any, Path]:
    """What the coordinator writes: train on the rows, export, write model.onnx; returns the estimator too."""
    estimator, spec, x = train_model(training.reset_index(drop=True), target, task, schema, seed=0)
    path = folder / MODEL_FILE_NAME
    path.write_bytes(model_export.export_model(estimator, spec, x[:2000]))
    return estimator, path


def test_readme_lines_on_the_sample_data(tmp_path: Path) -> None:
    schema_dict, frame, target, task = demo_dataset(4000, seed=3)
    schema = Schema.from_dict(schema_dict)
    _, model_path = _deliver(frame.iloc[:3000], schema, target, task, tmp_path)
    frame.iloc[3000:].to_csv(tmp_path / "my_rows.csv", index=False)

    from cleanroom.evaluation.model_file import load_model

    model = load_model(tmp_path / "model.onnx")
    probabilities = model.predict_proba(pd.read_csv(tmp_path / "my_rows.csv"))

    truth = pd.read_csv(tmp_path / "my_rows.csv")[target]
    assert probabilities.shape == (len(truth), 2) and np.isfinite(probabilities).all()
    positive = list(model.classes_).index("yes")
    assert roc_auc_score((truth == "yes").to_numpy(), probabilities[:, positive]) > 0.7


@pytest.mark.skipif(not (ADULT / "holdout.csv").is_file(), reason="UCI Adult not in /work/shared/data/adult")
def test_readme_lines_on_adult_holdout(tmp_path: Path) -> None:
    schema = Schema.load(ADULT / "schema.json")
    target = str(schema.target)
    training = pd.read_csv(ADULT / "train.csv").sample(10000, random_state=0)
    estimator, model_path = _deliver(training, schema, target, "classification", tmp_path)

    from cleanroom.evaluation.model_file import load_model

    model = load_model(model_path)
    probabilities = model.predict_proba(pd.read_csv(ADULT / "holdout.csv"))

    holdout = pd.read_csv(ADULT / "holdout.csv")
    assert pd.api.types.is_integer_dtype(holdout["education_num"])  # the column that broke model.skops
    truth = (holdout[target] == ">50K").to_numpy()
    assert roc_auc_score(truth, probabilities[:, list(model.classes_).index(">50K")]) > 0.85
    expected = estimator.predict_proba(feature_matrix(holdout, model.spec))
    assert np.max(np.abs(probabilities - expected)) <= 1e-5
