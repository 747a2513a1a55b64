"""model.onnx: faithful export, the schema-driven encoding of raw CSV data, and the loader's refusals."""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from cleanroom.errors import InvalidInput
from cleanroom.evaluation import model_export
from cleanroom.evaluation import model_file as mf
from cleanroom.evaluation.model_file import ModelRefused, ModelSpec, feature_matrix, load_model
from cleanroom.schema import Schema
from tests.model_helpers import MIXED_SCHEMA, exported, mixed_frame, mixed_schema

TASKS = {"binary": ("income", "classification"), "multiclass": ("grade", "classification"),
         "regression": ("spend", "regression")}  # fmt: skip


@pytest.fixture(scope="module")
def binary_model() -> tuple[Any, ModelSpec, bytes]:
    return exported(mixed_frame(3000, seed=1), mixed_schema(), "income", "classification")


# ---- faithful export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_onnx_outputs_equal_scikit_learn_with_missing_values_and_unseen_categories(kind: str) -> None:
    target, task = TASKS[kind]
    schema = mixed_schema()
    estimator, spec, data = exported(mixed_frame(3000, seed=2), schema, target, task)
    model = load_model(data, schema, target, task)
    test = mixed_frame(2000, seed=3, unseen=True)
    x = feature_matrix(test, spec)
    assert np.isnan(x).any() and (x[:, spec.features.index(_feature(spec, "workclass"))] == 4).any()
    if task == "classification":
        expected = estimator.predict_proba(x)
        got = model.predict_proba(test)
        assert got.shape == (len(test), len(spec.classes))
    else:
        expected = estimator.predict(x)[:, None]
        got = model.predict(test)[:, None]
    assert np.max(np.abs(got - expected)) <= 1e-5


def _feature(spec: ModelSpec, name: str) -> mf.FeatureSpec:
    return next(f for f in spec.features if f.name == name)


def test_delivered_model_is_small_and_has_only_allowed_operators(binary_model: Any) -> None:
    _, _, data = binary_model
    proto = onnx.load_from_string(data)
    assert {(n.domain, n.op_type) for n in proto.graph.node} <= mf.ALLOWED_OPS
    assert len(data) < 1_000_000


def test_export_refuses_a_file_that_does_not_reproduce_the_model(
    binary_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    estimator, spec, _ = binary_model
    rows = feature_matrix(mixed_frame(300, seed=4), spec)
    swapped = ModelSpec(spec.task, spec.target, spec.features, tuple(reversed(spec.classes)))
    with pytest.raises(model_export.ExportError, match="are not the model's"):
        model_export.export_model(estimator, swapped, rows)
    _, _, other = exported(mixed_frame(3000, seed=9), mixed_schema(), "income", "classification")
    monkeypatch.setattr(model_export, "to_onnx", lambda estimator, spec: other)  # a wrong translation
    with pytest.raises(model_export.ExportError, match="differs from scikit-learn"):
        model_export.export_model(estimator, spec, rows)


def test_export_refuses_categorical_splits() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    spec = ModelSpec.for_schema(mixed_schema(), "income", "classification")
    frame = mixed_frame(2000, seed=8).dropna(subset=["income"])
    x = feature_matrix(frame, spec)
    categorical = [f.kind == "categorical" for f in spec.features]
    estimator = HistGradientBoostingClassifier(categorical_features=categorical, max_iter=5, random_state=0)
    with threadpool_limits(limits=1):
        estimator.fit(np.nan_to_num(x, nan=0.0), frame["income"].to_numpy())
    labelled = ModelSpec(spec.task, spec.target, spec.features, tuple(estimator.classes_))
    with pytest.raises(model_export.ExportError, match="categorical splits"):
        model_export.export_model(estimator, labelled, x)


# ---- the input encoding: data as pandas reads it -------------------------------------------------------


def test_prediction_on_a_frame_as_read_from_csv_equals_prediction_on_category_strings(
    binary_model: Any, tmp_path: Path
) -> None:
    _, _, data = binary_model
    model = load_model(data)
    strings = mixed_frame(1500, seed=5, unseen=True)
    strings.to_csv(tmp_path / "partner.csv", index=False)
    raw = pd.read_csv(tmp_path / "partner.csv")
    assert pd.api.types.is_float_dtype(raw["education_num"])  # 13.0 (the column has gaps)
    assert pd.api.types.is_float_dtype(raw["rating"])  # 2.5 for the category "2.50"
    assert {type(v) for v in raw["married"].dropna()} == {bool}  # "true" read as True
    raw_complete = pd.read_csv(io.StringIO(strings.dropna(subset=["education_num"]).to_csv(index=False)))
    assert pd.api.types.is_integer_dtype(raw_complete["education_num"])  # 13 (no gaps)
    np.testing.assert_array_equal(model.predict_proba(raw), model.predict_proba(strings))
    complete = strings.dropna(subset=["education_num"]).reset_index(drop=True)
    np.testing.assert_array_equal(model.predict_proba(raw_complete), model.predict_proba(complete))
    assert np.isfinite(model.predict_proba(raw)).all()
    assert set(model.predict(raw)) <= {"<=50K", ">50K"}


def test_feature_matrix_follows_the_schema_rules() -> None:
    schema = mixed_schema()
    spec = ModelSpec.for_schema(schema, "income", "classification")
    frame = pd.DataFrame(
        {
            "age": [20, "35", "not a number", None, 200.0, 5],
            "workclass": ["State-gov", "Never-seen", "", None, "?", " "],
            "education_num": [13, 13.0, "13", "13.0", 17, np.nan],
            "married": [True, False, "true", "TRUE", "yes", None],
            "rating": [0.5, 2.5, "2.50", "2.5", 1.5, "x"],
            "hours": [40, 0.5, 120, 99, np.inf, -np.inf],
            "gain": [-5, 1e9, 50.5, np.nan, np.inf, 0],
            "grade": ["low", "mid", "high", "low", "mid", "high"],
            "spend": [1, 2, 3, 4, 5, 6],
        },
        dtype=object,
    )
    x = feature_matrix(frame, spec)
    names = [f.name for f in spec.features]
    column = {name: x[:, names.index(name)] for name in names}
    nan = math.nan
    np.testing.assert_array_equal(column["age"], [20, 35, nan, nan, 90, 17])  # clipped to [17, 90]
    np.testing.assert_array_equal(column["workclass"], [1, 4, nan, nan, 3, nan])  # unknown -> __other__ (4)
    np.testing.assert_array_equal(column["education_num"], [12, 12, 12, nan, nan, nan])  # "13.0" is not "13"
    np.testing.assert_array_equal(column["married"], [0, 1, 0, nan, nan, nan])  # unknown -> missing here
    np.testing.assert_array_equal(column["rating"], [0, 2, 2, nan, 1, nan])
    np.testing.assert_array_equal(column["hours"], [40, nan, nan, 99, nan, nan])  # out of range -> missing
    np.testing.assert_array_equal(column["gain"], [0, 100000, 50.5, nan, 100000, 0])
    assert "income" not in names and "id" not in names and "grade" in names


def test_feature_matrix_names_a_missing_column_without_values() -> None:
    spec = ModelSpec.for_schema(mixed_schema(), "income", "classification")
    with pytest.raises(InvalidInput, match=r"no column 'age'"):
        feature_matrix(pd.DataFrame({"workclass": ["secret value"]}), spec)


def test_probe_rows_come_from_the_spec_alone(binary_model: Any) -> None:
    _, spec, data = binary_model
    probe = mf.probe_frame(spec)
    assert len(probe) == mf.BATCH_ROWS
    x = feature_matrix(probe, spec)
    workclass = x[:, spec.features.index(_feature(spec, "workclass"))]
    assert set(np.unique(workclass[~np.isnan(workclass)])) == {0, 1, 2, 3, 4} and np.isnan(workclass).any()
    load_model(data).probe()


def test_predictions_do_not_depend_on_how_rows_are_batched(binary_model: Any) -> None:
    _, _, data = binary_model
    model = load_model(data)
    frame = mixed_frame(mf.BATCH_ROWS * 2 + 7, seed=6)
    whole = model.predict_proba(frame)
    one_by_one = np.concatenate([model.predict_proba(frame.iloc[[i]]) for i in range(0, len(frame), 97)])
    np.testing.assert_array_equal(whole[::97], one_by_one)
    assert model.predict_proba(frame.iloc[:0]).shape == (0, 2)


# ---- the loader refuses code and anything it does not know ----------------------------------------------


def _attack_pipeline(marker: Path) -> Any:
    """The reviewer's attack: a FunctionTransformer whose function runs a Python script when predicting."""
    from functools import partial

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils._testing import assert_run_python_script_without_output

    script = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('code ran')"
    transformer = FunctionTransformer(partial(assert_run_python_script_without_output, script))
    pipeline = Pipeline([("run", transformer), ("model", LogisticRegression())])
    pipeline.steps[1][1].fit(np.array([[0.0], [1.0]]), [0, 1])
    return pipeline


def test_skops_model_carrying_code_is_refused_before_anything_runs(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    marker = tmp_path / "marker"
    attack = tmp_path / "model.onnx"  # the attacker names it as the party expects
    attack.write_bytes(sio.dumps(_attack_pipeline(marker)))
    with pytest.raises(ModelRefused, match="not an ONNX model"):
        load_model(attack, mixed_schema(), "income", "classification")
    assert not marker.exists()
    # the same bytes under the old rule (trust every scikit-learn/numpy type and functools.partial) run code
    untrusted = sio.get_untrusted_types(data=attack.read_bytes())
    assert all(t.startswith(("sklearn.", "numpy.")) or t == "functools.partial" for t in untrusted)
    with pytest.raises(Exception):  # noqa: B017  the script's output check fails after the script ran
        sio.loads(attack.read_bytes(), trusted=untrusted).predict(np.array([[0.0]]))
    assert marker.read_text() == "code ran"


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", "{}")
    return buffer.getvalue()


NOT_ONNX: dict[str, Callable[[Path], bytes]] = {
    "pickle": lambda marker: pickle.dumps(_attack_pipeline(marker)),
    "empty": lambda marker: b"",
    "random": lambda marker: np.random.default_rng(0).bytes(4096),
    "zip": lambda marker: _zip_bytes(),
    "csv": lambda marker: b"age,income\n39,<=50K\n",
    "json": lambda marker: b'{"graph": {"node": []}}',
}


@pytest.mark.parametrize("kind", sorted(NOT_ONNX))
def test_every_non_onnx_file_is_refused(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.onnx"
    path.write_bytes(NOT_ONNX[kind](marker))
    with pytest.raises(ModelRefused, match="not an ONNX model|model file is empty|IR version"):
        load_model(path)
    assert not marker.exists()


def _add_node(proto: Any, node: Any) -> None:
    proto.graph.node.insert(0, node)


def _custom_domain(proto: Any) -> None:
    proto.opset_import.append(helper.make_opsetid("com.example.evil", 1))
    _add_node(proto, helper.make_node("Exec", [mf.INPUT_NAME], ["ignored"], domain="com.example.evil"))


def _standard_op_not_allowed(proto: Any) -> None:
    _add_node(proto, helper.make_node("Identity", [mf.INPUT_NAME], ["copy"]))


def _function(proto: Any) -> None:
    body = [helper.make_node("Identity", ["x"], ["y"])]
    opsets = [helper.make_opsetid("", 21)]
    function = helper.make_function("local.functions", "Run", ["x"], ["y"], body, opsets)
    proto.functions.append(function)
    proto.opset_import.append(helper.make_opsetid("local.functions", 1))
    _add_node(proto, helper.make_node("Run", [mf.INPUT_NAME], ["out"], domain="local.functions"))


def _subgraph_attribute(proto: Any) -> None:
    inner = helper.make_graph([], "inner", [], [])
    add = next(n for n in proto.graph.node if n.op_type == "Add")
    add.attribute.append(helper.make_attribute("body", inner))


def _external_data(proto: Any) -> None:
    tensor = proto.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"


def _loop(proto: Any) -> None:
    body = helper.make_graph([], "body", [], [])
    _add_node(proto, helper.make_node("Loop", ["", ""], ["x"], body=body))


def _opset(proto: Any) -> None:
    proto.opset_import[0].version = 22


def _ir(proto: Any) -> None:
    proto.ir_version = 11


def _no_spec(proto: Any) -> None:
    del proto.metadata_props[:]


def _float_input(proto: Any) -> None:
    proto.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT


def _renamed_output(proto: Any) -> None:
    proto.graph.output[0].name = "scores"


def _training_graph(proto: Any) -> None:
    proto.training_info.add()


def _unknown_field(proto: Any) -> None:
    node = proto.graph.node[0]
    node.ParseFromString(node.SerializeToString() + b"\xb8\x3e\x01")  # field 999 = 1: unknown to onnx


MUTATIONS: dict[str, tuple[Callable[[Any], None], str]] = {
    "custom domain": (_custom_domain, "operator sets"),
    "standard op not allowed": (_standard_op_not_allowed, "operator 'Identity'"),
    "model-local function": (_function, "operator sets"),
    "sub-graph attribute": (_subgraph_attribute, "attribute 'body'"),
    "external data": (_external_data, "refers to data outside the file"),
    "control flow": (_loop, "operator 'Loop'"),
    "other opset version": (_opset, "operator sets"),
    "other IR version": (_ir, "IR version"),
    "no spec": (_no_spec, "cleanroom.model metadata"),
    "float input": (_float_input, "input 'features' must be double"),
    "renamed output": (_renamed_output, "outputs are"),
    "training graph": (_training_graph, "training graphs"),
    "unknown protobuf field": (_unknown_field, "fields unknown"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_onnx_files_outside_the_allowlist_are_refused(name: str, binary_model: Any) -> None:
    _, _, data = binary_model
    mutate, message = MUTATIONS[name]
    proto = onnx.load_from_string(data)
    mutate(proto)
    with pytest.raises(ModelRefused, match=message):
        load_model(proto.SerializeToString(), mixed_schema())


def test_a_function_in_an_allowed_domain_is_refused(binary_model: Any) -> None:
    _, _, data = binary_model
    proto = onnx.load_from_string(data)
    body = [helper.make_node("Add", ["x", "x"], ["y"])]
    opsets = [helper.make_opsetid("", 21)]
    proto.functions.append(helper.make_function("", "Double", ["x"], ["y"], body, opsets))
    with pytest.raises(ModelRefused, match="local functions"):
        load_model(proto.SerializeToString())


def test_a_model_that_does_not_fit_the_schema_or_plan_is_refused(binary_model: Any) -> None:
    _, _, data = binary_model
    changed = {**MIXED_SCHEMA, "columns": [dict(c) for c in MIXED_SCHEMA["columns"]]}
    changed["columns"][2]["categories"] = ["Private", "State-gov", "Self-emp", "Unknown"]
    with pytest.raises(ModelRefused, match="differ from what the schema prescribes"):
        load_model(data, Schema.from_dict(changed))
    with pytest.raises(ModelRefused, match="the plan's target is 'grade'"):
        load_model(data, mixed_schema(), "grade", "classification")
    with pytest.raises(ModelRefused, match="the plan's task is 'regression'"):
        load_model(data, mixed_schema(), "income", "regression")
    proto = onnx.load_from_string(data)
    spec = ModelSpec.from_json(proto.metadata_props[0].value)
    bad = ModelSpec(spec.task, spec.target, spec.features, ("<=50K", "rich"))
    helper.set_model_props(proto, {mf.SPEC_KEY: bad.to_json()})
    with pytest.raises(ModelRefused, match="classes must be at least two of the target's levels"):
        load_model(proto.SerializeToString(), mixed_schema())


def test_an_oversized_file_is_refused_before_it_is_read(binary_model: Any, tmp_path: Path) -> None:
    _, _, data = binary_model
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelRefused, match="over the limit"):
        load_model(path, max_bytes=len(data) - 1)
    assert load_model(path, max_bytes=len(data)).spec.target == "income"
