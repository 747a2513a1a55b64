"""Training the job's model on synthetic rows and writing it as an ONNX file (the coordinator's side).

The model is scikit-learn's HistGradientBoosting on `model_file.feature_matrix` (categorical features as the
schema's integer codes, numerical features as floats, NaN for missing: the trees learn where missing values
go). It is written with `onnx.helper` as one `ai.onnx.ml` TreeEnsemble (opset 5, double precision: the same
thresholds and leaf values as scikit-learn, compared in the same precision) plus the bias and link function.

Why not skl2onnx: with the protobuf 7 runtime this project's generated gRPC code needs, skl2onnx 1.20 fails
on HistGradientBoosting (it writes a Python bool into an integer attribute), and its tree converters ignore
HistGradientBoosting's categorical splits (they would be converted as numeric thresholds, silently wrong).
The ensemble here has no categorical splits (the features are ordinal codes), so the translation is a
direct copy of each tree's nodes; `export_model` checks it against scikit-learn on the rows it is given
(`FAITHFUL_TOLERANCE`) and refuses to write a file that differs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.errors import CleanroomError, DataError
from cleanroom.evaluation import model_file as mf
from cleanroom.evaluation.model_file import CLASSIFICATION, ModelSpec

FAITHFUL_TOLERANCE = 1e-5
_BRANCH_LEQ = 0  # TreeEnsemble's nodes_modes enumeration
_SUM = 1  # TreeEnsemble's aggregate_function enumeration
_NO_TRANSFORM = 0  # TreeEnsemble's post_transform enumeration


class ExportError(CleanroomError):
    """The trained model cannot be written as a faithful ONNX file."""


def train_model(
    x: np.ndarray, y: pd.Series, spec: ModelSpec, seed: int | None, threads: int = 1
) -> tuple[Any, ModelSpec]:
    """A fitted HistGradientBoosting model on the encoded matrix `x` and the spec with its class labels."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    if len(x) == 0:
        raise DataError(
            f"synthetic data: every value of the target {spec.target!r} is missing; no model trained"
        )
    estimator: Any
    if spec.task == CLASSIFICATION:
        estimator = HistGradientBoostingClassifier(random_state=seed)
    else:
        estimator = HistGradientBoostingRegressor(random_state=seed)
    # OpenMP oversubscription on a shared machine: 1 thread trained 90k rows in 2.2 s, the default 8.7 s.
    with threadpool_limits(limits=threads):
        estimator.fit(x, y.to_numpy())
    if spec.task == CLASSIFICATION:
        classes = tuple(str(c) for c in estimator.classes_)
        if len(classes) < 2:
            raise DataError(
                f"synthetic data: the target {spec.target!r} has a single class; no model trained"
            )
        spec = replace(spec, classes=classes)
    return estimator, spec


def _tree_arrays(predictor: Any, tree_target: int, first_node: int, first_leaf: int) -> dict[str, Any]:
    """One scikit-learn tree as TreeEnsemble node and leaf arrays (ids offset by the earlier trees)."""
    nodes = predictor.nodes
    if np.asarray(nodes["is_categorical"]).any():
        raise ExportError("the model has categorical splits, which this exporter does not write")
    is_leaf = np.asarray(nodes["is_leaf"], dtype=bool)
    inner, leaves = np.flatnonzero(~is_leaf), np.flatnonzero(is_leaf)
    position = np.zeros(len(nodes), dtype=np.int64)  # sklearn node index -> id among inner nodes or leaves
    position[inner] = first_node + np.arange(len(inner))
    position[leaves] = first_leaf + np.arange(len(leaves))
    left, right = (
        np.asarray(nodes["left"], dtype=np.int64)[inner],
        np.asarray(nodes["right"], dtype=np.int64)[inner],
    )
    return {
        "featureids": np.asarray(nodes["feature_idx"], dtype=np.int64)[inner],
        "splits": np.asarray(nodes["num_threshold"], dtype=np.float64)[inner],
        "trueids": position[left],
        "trueleafs": is_leaf[left].astype(np.int64),
        "falseids": position[right],
        "falseleafs": is_leaf[right].astype(np.int64),
        "missing": np.asarray(nodes["missing_go_to_left"], dtype=np.int64)[inner],
        "targets": np.full(len(leaves), tree_target, dtype=np.int64),
        "weights": np.asarray(nodes["value"], dtype=np.float64)[leaves],
    }


def _ensemble(estimator: Any) -> tuple[dict[str, np.ndarray], list[int], np.ndarray]:
    """All trees' arrays, their root ids, and the bias per output (single-leaf trees folded into it)."""
    n_targets = int(estimator.n_trees_per_iteration_)
    bias = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1).copy()
    if bias.shape != (n_targets,):
        raise ExportError(f"unexpected baseline of shape {bias.shape} for {n_targets} outputs")
    parts: list[dict[str, Any]] = []
    roots: list[int] = []
    n_nodes = n_leaves = 0
    for iteration in estimator._predictors:
        for target, predictor in enumerate(iteration):
            if bool(predictor.nodes["is_leaf"][0]):
                bias[target] += float(predictor.nodes["value"][0])
                continue
            arrays = _tree_arrays(predictor, target, n_nodes, n_leaves)
            roots.append(n_nodes)
            n_nodes += len(arrays["featureids"])
            n_leaves += len(arrays["weights"])
            parts.append(arrays)
    if not parts:
        raise ExportError("the model has no split at all (nothing was learned)")
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return merged, roots, bias


def _graph_nodes(
    spec: ModelSpec, arrays: dict[str, np.ndarray], roots: list[int], n_targets: int
) -> list[Any]:
    from onnx import helper, numpy_helper

    trees = helper.make_node(
        "TreeEnsemble", [mf.INPUT_NAME], ["raw"], domain=mf.ML_DOMAIN,
        n_targets=n_targets, aggregate_function=_SUM, post_transform=_NO_TRANSFORM, tree_roots=roots,
        nodes_featureids=arrays["featureids"].tolist(),
        nodes_splits=numpy_helper.from_array(arrays["splits"]),
        nodes_modes=numpy_helper.from_array(np.full(len(arrays["splits"]), _BRANCH_LEQ, dtype=np.uint8)),
        nodes_truenodeids=arrays["trueids"].tolist(), nodes_trueleafs=arrays["trueleafs"].tolist(),
        nodes_falsenodeids=arrays["falseids"].tolist(), nodes_falseleafs=arrays["falseleafs"].tolist(),
        nodes_missing_value_tracks_true=arrays["missing"].tolist(),
        leaf_targetids=arrays["targets"].tolist(), leaf_weights=numpy_helper.from_array(arrays["weights"]),
    )  # fmt: skip
    if spec.task != CLASSIFICATION:
        return [trees, helper.make_node("Add", ["raw", "bias"], [mf.PREDICTION])]
    if n_targets > 1:
        return [
            trees,
            helper.make_node("Add", ["raw", "bias"], ["score"]),
            helper.make_node("Softmax", ["score"], [mf.PROBABILITIES], axis=1),
        ]
    return [
        trees,
        helper.make_node("Add", ["raw", "bias"], ["score"]),
        helper.make_node("Sigmoid", ["score"], ["positive"]),
        helper.make_node("Sub", ["one", "positive"], ["negative"]),
        helper.make_node("Concat", ["negative", "positive"], [mf.PROBABILITIES], axis=1),
    ]


def to_onnx(estimator: Any, spec: ModelSpec) -> bytes:
    """The fitted HistGradientBoosting model as ONNX bytes (layout in `model_file`'s docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    arrays, roots, bias = _ensemble(estimator)
    n_targets = len(bias)
    if spec.task == CLASSIFICATION and n_targets != (1 if len(spec.classes) == 2 else len(spec.classes)):
        raise ExportError(f"{n_targets} tree outputs for the classes {list(spec.classes)}")
    initializers = [numpy_helper.from_array(bias.reshape(1, n_targets), "bias")]
    if spec.task == CLASSIFICATION and n_targets == 1:
        initializers.append(numpy_helper.from_array(np.ones((1, 1), dtype=np.float64), "one"))
    inputs = [helper.make_tensor_value_info(mf.INPUT_NAME, TensorProto.DOUBLE, ["rows", len(spec.features)])]
    outputs = [
        helper.make_tensor_value_info(spec.output_name, TensorProto.DOUBLE, ["rows", spec.output_width])
    ]
    graph = helper.make_graph(
        _graph_nodes(spec, arrays, roots, n_targets), "cleanroom_model", inputs, outputs, initializers
    )
    opsets = [helper.make_opsetid(domain, version) for domain, version in mf.ALLOWED_OPSETS.items()]
    model = helper.make_model(
        graph, opset_imports=opsets, ir_version=mf.IR_VERSION, producer_name="cleanroom"
    )
    helper.set_model_props(model, {mf.SPEC_KEY: spec.to_json()})
    return bytes(model.SerializeToString())


def export_model(estimator: Any, spec: ModelSpec, check_rows: np.ndarray, threads: int = 1) -> bytes:
    """ONNX bytes whose outputs equal scikit-learn's on `check_rows` within `FAITHFUL_TOLERANCE`.

    scikit-learn predicts with `threads` OpenMP threads, as in training (its default, every core, spins
    and oversubscribes a shared machine: 2.6 s instead of 0.1 s for 5,000 rows on a loaded 2-core machine).
    """
    from threadpoolctl import threadpool_limits

    if spec.task == CLASSIFICATION and spec.classes != tuple(str(c) for c in estimator.classes_):
        raise ExportError(f"spec classes {list(spec.classes)} are not the model's {list(estimator.classes_)}")
    data = to_onnx(estimator, spec)
    loaded = mf.load_model(data)
    if len(check_rows):
        with threadpool_limits(limits=threads):
            expected = (
                estimator.predict_proba(check_rows)
                if spec.task == CLASSIFICATION
                else estimator.predict(check_rows)
            )
        got = loaded.run(np.asarray(check_rows, dtype=np.float64))
        difference = float(np.max(np.abs(got - np.asarray(expected, dtype=np.float64).reshape(got.shape))))
        if not difference <= FAITHFUL_TOLERANCE * (1.0 if spec.task == CLASSIFICATION else _scale(expected)):
            raise ExportError(f"ONNX model differs from scikit-learn by {difference:.3g} on the check rows")
    return data


def _scale(values: Any) -> float:
    return max(1.0, float(np.max(np.abs(np.asarray(values, dtype=np.float64)))))


def train_and_export(
    x: np.ndarray, y: pd.Series, spec: ModelSpec, seed: int | None, threads: int, check_rows: np.ndarray
) -> tuple[bytes, ModelSpec]:
    """Train on (x, y) and return the checked ONNX bytes with the spec (class labels filled in)."""
    estimator, spec = train_model(x, y, spec, seed, threads)
    return export_model(estimator, spec, check_rows, threads), spec
