"""Regenerate the committed protobuf/gRPC code from `proto/` (grpcio-tools + mypy-protobuf).

Usage: python scripts/gen_proto.py [--out DIR]   (default: the repository root, i.e. writes transport/v1/)

Writes `transport/v1/<name>_pb2.py`, `<name>_pb2.pyi` and `<name>_pb2_grpc.py` (+ `.pyi`) for every
`proto/transport/v1/*.proto`. The proto package path mirrors the Python package, so the generated imports are
already absolute (`from transport.v1 import party_pb2`). `tests/test_transport_proto.py` regenerates into a
temporary directory and fails if the committed files differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "proto"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "transport" / "v1").glob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc for every proto file into `out`; returns the generated files."""
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    rel = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *rel,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed for {rel}")
    return sorted((out / "transport" / "v1").glob("*_pb2*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO, help="output root (default: repository root)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
