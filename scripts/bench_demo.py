"""Benchmark of the whole local collaboration: `cleanroom demo` with 3 parties x 30,000 rows by default.

Prints the demo's per-stage timings and per-party bytes, then the two targets of issue 4: wall time under
60 s, and each party's upload within 2x the size of the marginal tables it contributed.
Usage: python scripts/bench_demo.py [--parties 3] [--rows 30000] [--epsilon 1] [--out out/bench-demo]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom_cli.main import main as cleanroom  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--out", default="out/bench-demo")
    args = parser.parse_args()
    start = time.perf_counter()
    status = cleanroom(["demo", "--parties", str(args.parties), "--rows", str(args.rows),
                        "--epsilon", str(args.epsilon), "--out", args.out])  # fmt: skip
    wall = time.perf_counter() - start
    if status != 0:
        print(f"demo failed with status {status}")
        return status
    record = json.loads((Path(args.out) / "_work" / "coordinator" / "job.json").read_text())
    tables = int(record["table_bytes_per_party"])
    worst = max(u["bytes_uploaded"] for u in record["uploads"].values()) / tables
    print(f"wall {wall:.1f} s (target < 60 s): {'ok' if wall < 60 else 'MISSED'}")
    print(f"largest upload / tables {worst:.3f}x (target <= 2x): {'ok' if worst <= 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
