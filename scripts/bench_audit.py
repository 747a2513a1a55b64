"""Benchmark: audit-log append rate (fsync'd entry + atomic head update) and verify rate. Prints figures."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom.audit import AuditLog, verify  # noqa: E402


def main(n: int = 300) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        log = AuditLog(path)
        start = time.perf_counter()
        for i in range(n):
            log.append("measure", "answered", job_id="bench", round=i, cliques=[["a", "b"]], rho_charged=1e-3)
        append_s = time.perf_counter() - start
        start = time.perf_counter()
        result = verify(path)
        verify_s = time.perf_counter() - start
        print(f"appends: {n} in {append_s:.3f} s ({n / append_s:.0f}/s, {1000 * append_s / n:.2f} ms each)")
        print(f"verify:  {result.entries} entries in {verify_s:.4f} s; ok={result.ok}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
