"""The party's staged model: checked on upload; NaN scores never fail a round or name a row."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from cleanroom.errors import PermissionDenied
from cleanroom.evaluation import model_file as mf
from cleanroom.evaluation import release, utility
from cleanroom.evaluation.model_file import MODEL_FILE_NAME, load_model
from cleanroom.plan import Plan, schema_file_hash
from party.evaluation import PartyEvaluation
from party.sources.frame import FrameSource
from party.sources.rules import rules_from_schema
from tests.governance_fixtures import write_plan
from tests.model_helpers import MIXED_SCHEMA, exported, mixed_frame, mixed_schema
from transport import wire

JOB = "job-1"

pytestmark = pytest.mark.adversary  # the malicious-coordinator suite: `pytest -m adversary`


def _party(tmp_path: Path, target: str, task: str, rows: int = 800) -> PartyEvaluation:
    """A real plan (target/task as given) over the mixed schema, the party's rows in memory."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    schema_path = tmp_path / "mixed.json"
    schema_path.write_text(json.dumps(MIXED_SCHEMA))
    overrides = {"schema": '"mixed.json"', "schema_hash": f'"{schema_file_hash(schema_path)}"',
                 "target": f'"{target}"', "task": f'"{task}"'}  # fmt: skip
    plan = Plan.load(write_plan(tmp_path, overrides=overrides).path)
    schema = mixed_schema()
    frame = mixed_frame(rows, seed=21)
    source = FrameSource(frame, schema, rules_from_schema(schema))
    return PartyEvaluation("p0", plan, schema, source, tmp_path / "staged", b"secret")


def _stage(party: PartyEvaluation, data: bytes) -> None:
    """The StageEvaluation path: announce, stream, verify, then the model check."""
    meta = wire.ResultFile(MODEL_FILE_NAME, len(data), hashlib.sha256(data).hexdigest())
    writer = party.begin_staging(JOB, JOB, [meta])
    writer.write(MODEL_FILE_NAME, 0, data)
    writer.finish()
    party.check_staged(JOB)


def _nan_leaf(data: bytes) -> bytes:
    """The same model with its first leaf's value replaced by NaN (still only allowed operators)."""
    proto = onnx.load_from_string(data)
    trees = next(n for n in proto.graph.node if n.op_type == "TreeEnsemble")
    weights = next(a for a in trees.attribute if a.name == "leaf_weights")
    values = numpy_helper.to_array(weights.t).copy()
    values[0] = np.nan
    weights.t.CopyFrom(numpy_helper.from_array(values))
    return bytes(proto.SerializeToString())


@pytest.fixture(scope="module")
def income_model() -> bytes:
    return exported(mixed_frame(3000, seed=1), mixed_schema(), "income", "classification")[2]


def test_a_staged_model_carrying_code_is_refused_and_deleted(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from tests.test_model_file import _attack_pipeline

    party = _party(tmp_path, "income", "classification")
    marker = tmp_path / "marker"
    with pytest.raises(PermissionDenied, match="model.onnx refused: model file is not an ONNX model"):
        _stage(party, sio.dumps(_attack_pipeline(marker)))
    assert not party.staged_dir(JOB).exists()
    assert not marker.exists()


def test_a_staged_model_outside_the_allowlist_or_for_another_target_is_refused(
    tmp_path: Path, income_model: bytes
) -> None:
    proto = onnx.load_from_string(income_model)
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    party = _party(tmp_path, "income", "classification")
    with pytest.raises(PermissionDenied, match="operator sets"):
        _stage(party, proto.SerializeToString())
    assert not party.staged_dir(JOB).exists()
    other = _party(tmp_path / "other", "grade", "classification")
    with pytest.raises(PermissionDenied, match="the plan's target is 'grade'"):
        _stage(other, income_model)


def test_a_model_with_nan_scores_gives_a_valid_vector_and_no_error(
    tmp_path: Path, income_model: bytes
) -> None:
    party = _party(tmp_path, "income", "classification")
    _stage(party, _nan_leaf(income_model))  # the probe runs; NaN scores are not a reason to refuse
    frame = party.source.read_frame()
    known = frame.loc[frame["income"].notna()]
    raw = party.model(JOB).predict_proba(known)[:, 1]
    assert 0 < int(np.isnan(raw).sum()) < len(known)  # some records hit the NaN leaf
    vector = party.utility_vector(JOB)
    bins = utility.DEFAULT_SCORE_BINS
    assert vector.shape == (utility.classification_vector_length(),) and vector.dtype == np.int64
    assert int(vector[: 2 * bins].sum()) == len(known) == int(vector[2 * bins :].sum())
    middle = int(utility.NON_FINITE_SCORE * bins)
    finite = utility.score_histogram(raw[np.isfinite(raw)], bins)
    assert int(vector[middle] + vector[bins + middle]) == int(finite[middle] + np.isnan(raw).sum())


def test_regression_predictions_that_are_nan_count_as_the_lower_bound(tmp_path: Path) -> None:
    data = exported(mixed_frame(3000, seed=1), mixed_schema(), "spend", "regression")[2]
    party = _party(tmp_path, "spend", "regression")
    _stage(party, _nan_leaf(data))
    vector = party.utility_vector(JOB)
    frame = party.source.read_frame()
    known = frame.loc[frame["spend"].notna()]
    predictions = party.model(JOB).predict(known)
    assert np.isnan(predictions).any()
    bounds = release.target_bounds(party.schema, "spend")
    mapped = np.where(np.isnan(predictions), bounds.lower, predictions)
    expected = utility.regression_statistics(known["spend"].to_numpy(dtype=float), mapped, bounds)
    np.testing.assert_array_equal(vector, expected)


def test_positive_scores_map_every_non_finite_probability_to_the_fixed_score(income_model: bytes) -> None:
    model = load_model(_nan_leaf(income_model))
    frame = mixed_frame(600, seed=22)
    raw = model.predict_proba(frame)[:, 1]
    scores = utility.positive_scores(model, frame, ">50K")
    assert np.isnan(raw).any() and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores[np.isnan(raw)], utility.NON_FINITE_SCORE)
    np.testing.assert_array_equal(scores[~np.isnan(raw)], raw[~np.isnan(raw)])
    labels = (frame["income"] == ">50K").to_numpy()
    vector = utility.classification_statistics(labels, scores)
    assert int(vector.sum()) == 2 * len(frame)


def test_wire_and_staging_accept_only_model_onnx(tmp_path: Path) -> None:
    from cleanroom.errors import InvalidInput

    with pytest.raises(InvalidInput, match="must be one of"):
        wire.ResultFile("model.skops", 1, "00" * 32)
    assert MODEL_FILE_NAME in wire.RESULT_FILE_NAMES and mf.MODEL_FILE_NAME == "model.onnx"
    party = _party(tmp_path, "income", "classification")
    synthetic = wire.ResultFile("synthetic.csv", 1, "00" * 32)
    with pytest.raises(InvalidInput, match="cannot stage"):
        party.begin_staging(JOB, JOB, [synthetic])  # a plan with a target needs the model staged
