#!/usr/bin/env bash
# Quickstart command 1: install cleanroom into .venv and run a 3-party demo on built-in sample data.
# Each party node and the coordinator run as separate processes over mutual TLS on loopback.
# Outputs: out/demo/<party>/{synthetic.csv,model.onnx,report.json,report.html}; timings, bytes and each
# party's audit log (with its rho next to the ledger's) are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
rm -rf out/demo
exec .venv/bin/cleanroom demo --parties 3 --rows 30000 --epsilon 1 --out out/demo "$@"
