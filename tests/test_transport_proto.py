"""The committed generated code is exactly what scripts/gen_proto.py produces from proto/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", REPO / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    generated = _load_generator().generate(tmp_path)
    assert generated, "the generator produced no files"
    for path in generated:
        committed = REPO / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is generated but not committed"
        assert committed.read_bytes() == path.read_bytes(), f"{committed} differs from regenerated code"
    committed_names = {p.name for p in (REPO / "transport" / "v1").glob("*_pb2*")}
    assert committed_names == {p.name for p in generated}, "stale generated files are committed"


def test_no_init_in_proto_tree() -> None:
    assert not list((REPO / "proto").rglob("__init__.py"))


def test_generated_imports_are_absolute() -> None:
    text = (REPO / "transport" / "v1" / "party_pb2_grpc.py").read_text()
    assert "from transport.v1 import party_pb2" in text
