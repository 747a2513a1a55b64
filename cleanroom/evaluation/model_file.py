"""Trained models as ONNX files: a schema-driven input encoding, and a loader that runs nothing but data.

A model crosses a trust boundary twice: the coordinator stages it at every party for evaluation, and delivers
it to the results receivers. Neither may ever execute code that the sender chose. So a model travels as
`model.onnx`, an ONNX graph (a protobuf *data* format: tensors, attributes and the names of standard
operators; no byte code, no pickle), run by onnxruntime, which executes only the operators named in the graph
with its own compiled kernels. This module is everything a party or a partner needs to use one:

    model = load_model("model.onnx")                      # refuses anything but the graphs listed below
    scores = model.predict_proba(pd.read_csv("mine.csv"))  # or model.predict(...)

**What is inside a model file.** One input `features` (double, [rows, F]), one output: `probabilities`
(double, [rows, number of classes], columns in the order of `classes`) for classification, `prediction`
(double, [rows, 1]) for regression. The graph is a gradient-boosted tree ensemble (`ai.onnx.ml` TreeEnsemble)
plus a bias `Add` and the link function (`Sigmoid`, `Sub`, `Concat` or `Softmax`); `ALLOWED_OPS` lists the
only operators accepted. The metadata entry `cleanroom.model` holds the `ModelSpec` as JSON: task, target,
class labels and, per feature, how the schema encodes it. It is data too: it only selects which of the fixed
rules of `feature_matrix` apply to each column.

**The input encoding** (`feature_matrix`, the same at the coordinator, the parties and a partner) takes a
DataFrame exactly as `pd.read_csv` returns it and uses only the `ModelSpec` (derived from the public schema):
- categorical feature: the index of its category in the schema (0, 1, ...); a value matches a category when
  its text is equal, when it is a number equal to a numeric-looking category (13, 13.0 and "13" all match
  category "13"; 1.5 matches "1.50"), or a boolean equal, ignoring case, to a category ("True" or "true");
  missing values (NaN, None, empty or blank text) are NaN; any other value is the column's `__other__`
  code (the number of categories) when the schema maps unknown categories to `__other__`, else NaN;
- numerical feature: the value as a float (text that is not a number counts as missing, NaN); values
  outside the schema's [lower, upper] are clipped, or become NaN when the schema's `out_of_range` is
  `missing`.
Extra columns (the target, identifiers, anything else) are ignored; a missing feature column is an error.

**What `load_model` checks, before anything runs** (`ModelRefused` otherwise, naming the rule broken):
1. size at most `MAX_MODEL_BYTES`; the bytes parse as an ONNX `ModelProto` (a skops or pickle file does not)
   with no field this `onnx` version does not know;
2. IR version and operator sets exactly those this exporter writes (`ALLOWED_OPSETS`): no custom domain;
3. no model-local functions, no training graphs, no sparse initializers, no tensor stored outside the file
   (external data), no attribute holding a sub-graph; every node's (domain, operator) is in `ALLOWED_OPS`;
4. the `cleanroom.model` spec parses and, when a schema is given, equals what the schema and the plan's
   target and task prescribe (features, their encoding, the class labels among the target's levels);
5. the graph's input and output names, element types and shapes match the spec; `onnx.checker` (full check,
   with shape inference) accepts it;
6. onnxruntime builds a session from the bytes (never from a path, so no file beside it is read) on the CPU
   provider only, with no custom-operator library registered.

**Running.** `ModelFile` feeds the graph fixed batches of `BATCH_ROWS` rows (the last one padded), so the
graph only ever sees one input shape: `probe()` runs one batch of rows built from the spec alone (every
category, an unknown one, missing values, the bounds and beyond), and once it has run, whether later runs fail
cannot depend on anyone's records (the allowed operators cannot fail on values). Scores are returned as the
graph computes them; `cleanroom.evaluation.utility` maps non-finite ones to a fixed value per record.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from cleanroom.encoding import is_missing
from cleanroom.errors import InvalidInput, PermissionDenied
from cleanroom.schema import CATEGORICAL, IDENTIFIER, NUMERICAL, OTHER, Column, Schema

MODEL_FILE_NAME = "model.onnx"
MAX_MODEL_BYTES = 64 * 1024**2
INPUT_NAME = "features"
PROBABILITIES = "probabilities"
PREDICTION = "prediction"
SPEC_KEY = "cleanroom.model"
SPEC_VERSION = 1
CLASSIFICATION = "classification"
REGRESSION = "regression"
BATCH_ROWS = 256
ML_DOMAIN = "ai.onnx.ml"
IR_VERSION = 10
ALLOWED_OPSETS: Mapping[str, int] = {"": 21, ML_DOMAIN: 5}
ALLOWED_OPS = frozenset(
    {
        (ML_DOMAIN, "TreeEnsemble"),
        ("", "Add"),
        ("", "Sub"),
        ("", "Sigmoid"),
        ("", "Softmax"),
        ("", "Concat"),
    }
)
_NAME_LIMIT = 60

FloatMatrix = NDArray[np.float64]


class ModelRefused(PermissionDenied):
    """A file that is not a model this loader accepts; nothing in it was run."""


def _short(value: object) -> str:
    """repr of a name taken from a refused file, bounded (the file's author chose it)."""
    text = repr(value)
    return text if len(text) <= _NAME_LIMIT else text[: _NAME_LIMIT - 3] + "..."


# ---- the spec: what the model predicts and how each feature is encoded --------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """How one schema column becomes one float input of the model (rules in the module docstring)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    other: bool = False
    lower: float | None = None
    upper: float | None = None
    out_of_range_missing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput(f"feature name ({_short(self.name)}) must be a non-empty string")
        if self.kind == CATEGORICAL:
            if not self.categories or not all(isinstance(c, str) for c in self.categories):
                raise InvalidInput(f"feature {self.name!r}: categories must be a non-empty list of strings")
            if len(set(self.categories)) != len(self.categories):
                raise InvalidInput(f"feature {self.name!r}: categories must be distinct")
            if self.lower is not None or self.upper is not None or self.out_of_range_missing:
                raise InvalidInput(f"feature {self.name!r}: bounds only apply to numerical features")
        elif self.kind == NUMERICAL:
            lower, upper = self.lower, self.upper
            if lower is None or upper is None or not (math.isfinite(lower) and math.isfinite(upper)):
                raise InvalidInput(f"feature {self.name!r}: a numerical feature needs finite lower and upper")
            if lower >= upper or self.categories or self.other:
                raise InvalidInput(f"feature {self.name!r}: needs lower < upper and no categories")
        else:
            raise InvalidInput(
                f"feature {self.name!r}: kind ({_short(self.kind)}) must be categorical or numerical"
            )

    @classmethod
    def from_column(cls, column: Column) -> FeatureSpec:
        if column.type == CATEGORICAL:
            return cls(column.name, CATEGORICAL, tuple(column.categories), other=column.has_other)
        return cls(
            column.name,
            NUMERICAL,
            lower=column.lower,
            upper=column.upper,
            out_of_range_missing=column.policy.out_of_range == "missing",
        )

    def to_dict(self) -> dict[str, Any]:
        if self.kind == CATEGORICAL:
            return {
                "name": self.name,
                "kind": self.kind,
                "categories": list(self.categories),
                "other": self.other,
            }
        return {
            "name": self.name,
            "kind": self.kind,
            "lower": self.lower,
            "upper": self.upper,
            "out_of_range_missing": self.out_of_range_missing,
        }

    @classmethod
    def from_dict(cls, data: Any) -> FeatureSpec:
        if not isinstance(data, dict):
            raise InvalidInput("every feature must be a JSON object")
        kind = data.get("kind")
        keys = {"name", "kind", "categories", "other"} if kind == CATEGORICAL else {
            "name", "kind", "lower", "upper", "out_of_range_missing"
        }  # fmt: skip
        if set(data) != keys:
            raise InvalidInput(f"feature {_short(data.get('name'))}: keys must be {sorted(keys)}")
        if kind == CATEGORICAL:
            categories, other = data["categories"], data["other"]
            if not isinstance(categories, list) or not isinstance(other, bool):
                raise InvalidInput(
                    f"feature {_short(data['name'])}: categories must be a list, other a boolean"
                )
            return cls(data["name"], CATEGORICAL, tuple(categories), other=other)
        lower, upper, missing = data["lower"], data["upper"], data["out_of_range_missing"]
        if not all(_is_number(v) for v in (lower, upper)) or not isinstance(missing, bool):
            raise InvalidInput(f"feature {_short(data['name'])}: lower/upper must be numbers")
        return cls(
            data["name"], NUMERICAL, lower=float(lower), upper=float(upper), out_of_range_missing=missing
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelSpec:
    """What a model predicts (task, target, class labels in output order) and its features, in input order."""

    task: str
    target: str
    features: tuple[FeatureSpec, ...]
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in (CLASSIFICATION, REGRESSION):
            raise InvalidInput(f"task ({_short(self.task)}) must be {CLASSIFICATION!r} or {REGRESSION!r}")
        if not isinstance(self.target, str) or not self.target:
            raise InvalidInput("target must be a non-empty string")
        names = [f.name for f in self.features]
        if not names or len(set(names)) != len(names) or self.target in names:
            raise InvalidInput("features must be distinct, at least one, and not the target")
        if not all(isinstance(c, str) for c in self.classes) or len(set(self.classes)) != len(self.classes):
            raise InvalidInput("classes must be distinct strings")
        if self.task == REGRESSION and self.classes:
            raise InvalidInput("a regression model has no classes")

    @classmethod
    def for_schema(cls, schema: Schema, target: str, task: str, classes: Sequence[str] = ()) -> ModelSpec:
        """Every measured column except the target, in schema order, encoded as the schema says."""
        if target not in schema.names:
            raise InvalidInput(f"target {target!r} is not a column of the schema")
        features = tuple(
            FeatureSpec.from_column(c) for c in schema.columns if c.type != IDENTIFIER and c.name != target
        )
        return cls(task, target, features, tuple(classes))

    @property
    def output_name(self) -> str:
        return PROBABILITIES if self.task == CLASSIFICATION else PREDICTION

    @property
    def output_width(self) -> int:
        return len(self.classes) if self.task == CLASSIFICATION else 1

    def to_json(self) -> str:
        data = {
            "version": SPEC_VERSION,
            "task": self.task,
            "target": self.target,
            "classes": list(self.classes),
            "features": [f.to_dict() for f in self.features],
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidInput(f"{SPEC_KEY} is not JSON") from None
        keys = {"version", "task", "target", "classes", "features"}
        if not isinstance(data, dict) or set(data) != keys:
            raise InvalidInput(f"{SPEC_KEY} must be an object with keys {sorted(keys)}")
        if data["version"] != SPEC_VERSION:
            raise InvalidInput(f"{SPEC_KEY} version ({_short(data['version'])}) must be {SPEC_VERSION}")
        if not isinstance(data["classes"], list) or not isinstance(data["features"], list):
            raise InvalidInput(f"{SPEC_KEY}: classes and features must be lists")
        features = tuple(FeatureSpec.from_dict(f) for f in data["features"])
        return cls(data["task"], data["target"], features, tuple(data["classes"]))


def target_labels(schema: Schema, target: str) -> tuple[str, ...]:
    """The labels a classifier of `target` may have: its categories, and `__other__` if the schema has it."""
    column = next((c for c in schema.columns if c.name == target), None)
    if column is None or column.type != CATEGORICAL:
        raise InvalidInput(f"target {target!r} is not a categorical column of the schema")
    return tuple(column.categories) + ((OTHER,) if column.has_other else ())


def check_spec(spec: ModelSpec, schema: Schema, target: str | None = None, task: str | None = None) -> None:
    """The spec is exactly what `schema` (and the plan's target and task, when given) prescribe."""
    if target is not None and spec.target != target:
        raise ModelRefused(f"model predicts {_short(spec.target)}, the plan's target is {target!r}")
    if task is not None and spec.task != task:
        raise ModelRefused(f"model is a {_short(spec.task)} model, the plan's task is {task!r}")
    try:
        expected = ModelSpec.for_schema(schema, spec.target, spec.task)
    except InvalidInput as error:
        raise ModelRefused(f"model spec does not fit the schema: {error}") from None
    if spec.features != expected.features:
        raise ModelRefused("model features or their encoding differ from what the schema prescribes")
    if spec.task == CLASSIFICATION:
        labels = target_labels(schema, spec.target)
        if len(spec.classes) < 2 or not set(spec.classes) <= set(labels):
            raise ModelRefused(f"model classes must be at least two of the target's levels {list(labels)}")


# ---- the input encoding -----------------------------------------------------------------------------------


def _category_coder(feature: FeatureSpec) -> Callable[[object], float]:
    """value -> category code, NaN (missing) or the `__other__` code; see the module docstring."""
    exact = {c: i for i, c in enumerate(feature.categories)}
    folded: dict[str, int] = {}
    numeric: dict[float, int] = {}
    for i, category in enumerate(feature.categories):
        folded.setdefault(category.lower(), i)
        number = pd.to_numeric(pd.Series([category]), errors="coerce").iloc[0]
        if pd.notna(number) and math.isfinite(float(number)):
            numeric.setdefault(float(number), i)
    unknown = float(len(feature.categories)) if feature.other else math.nan

    def code(value: object) -> float:
        if is_missing(value):
            return math.nan
        if isinstance(value, bool | np.bool_):
            text = str(bool(value))
            index = exact.get(text, folded.get(text.lower()))
        elif isinstance(value, int | np.integer):
            index = exact.get(str(int(value)), numeric.get(float(value)))
        elif isinstance(value, float | np.floating):
            number = float(value)
            text = str(int(number)) if number.is_integer() else str(number)
            index = exact.get(text, numeric.get(number))
        else:
            index = exact.get(str(value))
        return unknown if index is None else float(index)

    return code


def _per_distinct(values: pd.Series, convert: Callable[[object], float]) -> FloatMatrix:
    """`convert` applied once per distinct value (missing cells go through it as None)."""
    factor, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = np.array([*(convert(u) for u in uniques), convert(None)], dtype=np.float64)
    result: FloatMatrix = lookup[factor]  # the NA sentinel -1 picks the appended last entry
    return result


def _number(value: object) -> float:
    if is_missing(value) or isinstance(value, bool | np.bool_):
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def _numerical(feature: FeatureSpec, values: pd.Series) -> FloatMatrix:
    dtype = values.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        numbers: FloatMatrix = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        numbers = _per_distinct(values, _number)
    assert feature.lower is not None and feature.upper is not None
    if feature.out_of_range_missing:
        with np.errstate(invalid="ignore"):
            outside = (numbers < feature.lower) | (numbers > feature.upper)
        return np.where(outside, np.nan, numbers)
    return np.clip(numbers, feature.lower, feature.upper)


def feature_matrix(frame: pd.DataFrame, spec: ModelSpec) -> FloatMatrix:
    """The model's input: one float64 column per feature of `spec`, encoded by the fixed rules above."""
    missing = [f.name for f in spec.features if f.name not in frame.columns]
    if missing:
        raise InvalidInput(f"data has no column {missing[0]!r} (a feature of the model)")
    columns = [
        _per_distinct(frame[f.name], _category_coder(f))
        if f.kind == CATEGORICAL
        else _numerical(f, frame[f.name])
        for f in spec.features
    ]
    if not columns or len(frame) == 0:
        return np.zeros((len(frame), len(spec.features)), dtype=np.float64)
    return np.stack(columns, axis=1).astype(np.float64, copy=False)


def probe_frame(spec: ModelSpec, rows: int = BATCH_ROWS) -> pd.DataFrame:
    """Rows from the spec alone (never from data): all categories, unknown and missing values, bounds."""
    data: dict[str, list[object]] = {}
    for j, feature in enumerate(spec.features):
        values: list[object]
        if feature.kind == CATEGORICAL:
            values = [*feature.categories, "\x00unknown", None, 7, 2.5, True]
        else:
            lower, upper = float(feature.lower or 0.0), float(feature.upper or 0.0)
            values = [lower, upper, (lower + upper) / 2, None, lower - 1, upper + 1, math.inf, "x"]
        data[feature.name] = [values[(i + j) % len(values)] for i in range(rows)]
    return pd.DataFrame(data, dtype=object)


# ---- loading: the checks of the module docstring, then an onnxruntime session ------------------------------


def read_model_bytes(source: str | os.PathLike[str] | bytes, max_bytes: int = MAX_MODEL_BYTES) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if path.stat().st_size > max_bytes:
            raise ModelRefused(f"{path.name}: {path.stat().st_size} bytes, over the limit of {max_bytes}")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ModelRefused(f"model file of {len(data)} bytes is over the limit of {max_bytes}")
    return data


def parse_model(data: bytes) -> Any:
    """The bytes as an onnx.ModelProto (parsing protobuf runs no code from the file)."""
    import onnx
    from google.protobuf.message import DecodeError

    if not data:
        raise ModelRefused("model file is empty")
    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise ModelRefused("model file is not an ONNX model (it does not parse as one)") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelRefused("model file is not an ONNX model (no graph)")
    known = onnx.ModelProto()
    known.CopyFrom(model)
    known.DiscardUnknownFields()  # fields this onnx does not know might mean something to onnxruntime's
    if known.ByteSize() != model.ByteSize():
        raise ModelRefused("model file holds fields unknown to this ONNX version (not allowed)")
    return model


def check_structure(model: Any) -> None:
    """Opsets, operators, functions, external data, sub-graphs: rules 2-3 of the module docstring."""
    import onnx

    if model.ir_version != IR_VERSION:
        raise ModelRefused(f"model IR version {_short(model.ir_version)} is not {IR_VERSION}")
    opsets = {o.domain: o.version for o in model.opset_import}
    if len(opsets) != len(model.opset_import) or opsets != dict(ALLOWED_OPSETS):
        domains = sorted(_short(d) for d in opsets)
        raise ModelRefused(f"model operator sets {domains} are not exactly {dict(ALLOWED_OPSETS)}")
    if model.functions:
        raise ModelRefused("model defines local functions (none are allowed)")
    if model.training_info:
        raise ModelRefused("model carries training graphs (none are allowed)")
    graph = model.graph
    if graph.sparse_initializer:
        raise ModelRefused("model has sparse initializers (none are allowed)")
    for tensor in graph.initializer:
        _check_tensor(tensor, "initializer")
    forbidden_attributes = {
        onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.SPARSE_TENSOR,
        onnx.AttributeProto.SPARSE_TENSORS, onnx.AttributeProto.TYPE_PROTO, onnx.AttributeProto.TYPE_PROTOS,
    }  # fmt: skip
    for node in graph.node:
        if (node.domain, node.op_type) not in ALLOWED_OPS:
            where = f"{node.domain}." if node.domain else ""
            raise ModelRefused(f"model uses operator {_short(where + node.op_type)}, which is not allowed")
        for attribute in node.attribute:
            if attribute.type in forbidden_attributes or attribute.ref_attr_name:
                raise ModelRefused(
                    f"operator {node.op_type}: attribute {_short(attribute.name)} is not allowed"
                )
            if attribute.type == onnx.AttributeProto.TENSOR:
                _check_tensor(attribute.t, f"{node.op_type} attribute")
            for tensor in attribute.tensors:
                _check_tensor(tensor, f"{node.op_type} attribute")


def _check_tensor(tensor: Any, what: str) -> None:
    import onnx

    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        raise ModelRefused(f"model {what} {_short(tensor.name)} refers to data outside the file")
    if tensor.data_type == onnx.TensorProto.STRING:
        raise ModelRefused(f"model {what} {_short(tensor.name)} holds strings (not allowed)")


def model_spec(model: Any) -> ModelSpec:
    entries = [p.value for p in model.metadata_props if p.key == SPEC_KEY]
    if len(entries) != 1:
        raise ModelRefused(f"model needs exactly one {SPEC_KEY} metadata entry, found {len(entries)}")
    try:
        return ModelSpec.from_json(entries[0])
    except InvalidInput as error:
        raise ModelRefused(f"model metadata: {error}") from None


def check_interface(model: Any, spec: ModelSpec) -> None:
    """Input `features` double [rows, F] and the one output double [rows, width]; then onnx's full check."""
    import onnx

    graph = model.graph
    _check_value(graph.input, INPUT_NAME, len(spec.features), "input")
    _check_value(graph.output, spec.output_name, spec.output_width, "output")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ModelRefused(f"onnx checker refused the model: {first}") from None


def _check_value(values: Sequence[Any], name: str, width: int, what: str) -> None:
    import onnx

    if len(values) != 1 or values[0].name != name:
        names = [_short(v.name) for v in values][:5]
        raise ModelRefused(f"model {what}s are {names}, expected exactly [{name!r}]")
    tensor = values[0].type.tensor_type
    dims = tensor.shape.dim
    shape_ok = len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value == width
    if tensor.elem_type != onnx.TensorProto.DOUBLE or not shape_ok or dims[0].HasField("dim_value"):
        raise ModelRefused(f"model {what} {name!r} must be double of shape [rows, {width}]")


def _session(data: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.load_model_format", "ONNX")
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped exceptions
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ModelRefused(f"onnxruntime refused the model: {first}") from None


def load_model(
    source: str | os.PathLike[str] | bytes,
    schema: Schema | None = None,
    target: str | None = None,
    task: str | None = None,
    *,
    max_bytes: int = MAX_MODEL_BYTES,
) -> ModelFile:
    """A checked, runnable model (all checks of the module docstring); `ModelRefused` otherwise."""
    model = parse_model(read_model_bytes(source, max_bytes))
    check_structure(model)
    spec = model_spec(model)
    if schema is not None:
        check_spec(spec, schema, target, task)
    check_interface(model, spec)
    return ModelFile(spec, _session(model.SerializeToString()))


class ModelFile:
    """A loaded model: `predict_proba` / `predict` on a DataFrame as `pd.read_csv` returns it."""

    def __init__(self, spec: ModelSpec, session: Any) -> None:
        self.spec = spec
        self._session = session

    @property
    def classes_(self) -> NDArray[np.object_]:
        """Class labels in the order of `predict_proba`'s columns (empty for regression)."""
        return np.asarray(self.spec.classes, dtype=object)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.spec.features)

    def predict_proba(self, frame: pd.DataFrame) -> FloatMatrix:
        if self.spec.task != CLASSIFICATION:
            raise InvalidInput(f"model of {self.spec.target!r} is a regression model: use predict")
        return self.run(feature_matrix(frame, self.spec))

    def predict(self, frame: pd.DataFrame) -> NDArray[Any]:
        """Regression: the predicted values; classification: the most probable class label per row."""
        output = self.run(feature_matrix(frame, self.spec))
        if self.spec.task == REGRESSION:
            return output[:, 0]
        labels: NDArray[Any] = self.classes_[np.argmax(output, axis=1)] if len(output) else self.classes_[:0]
        return labels

    def run(self, matrix: FloatMatrix) -> FloatMatrix:
        """The graph on an encoded matrix, in fixed batches of `BATCH_ROWS` rows (the last one NaN-padded)."""
        width = self.spec.output_width
        outputs = []
        for start in range(0, len(matrix), BATCH_ROWS):
            batch = np.full((BATCH_ROWS, len(self.spec.features)), np.nan, dtype=np.float64)
            chunk = matrix[start : start + BATCH_ROWS]
            batch[: len(chunk)] = chunk
            result = np.asarray(self._session.run([self.spec.output_name], {INPUT_NAME: batch})[0])
            if result.shape != (BATCH_ROWS, width) or result.dtype != np.float64:
                raise ModelRefused(f"model output has shape {result.shape}, expected ({BATCH_ROWS}, {width})")
            outputs.append(result[: len(chunk)])
        if not outputs:
            return np.zeros((0, width), dtype=np.float64)
        return np.concatenate(outputs, axis=0)

    def probe(self) -> None:
        """Run one batch of rows built from the spec alone; `ModelRefused` if the graph does not run."""
        try:
            self.run(feature_matrix(probe_frame(self.spec), self.spec))
        except ModelRefused:
            raise
        except Exception as error:  # onnxruntime's own exceptions; the probe rows hold no one's data
            raise ModelRefused(
                f"model does not run on the schema's probe rows ({type(error).__name__})"
            ) from None
