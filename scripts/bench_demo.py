"""Benchmark of the whole local collaboration: `cleanroom demo` with 3 parties x 30,000 rows by default.

Prints the demo's per-stage timings and per-party bytes, then the two targets of issue 4: wall time under
60 s, and each party's upload within 2x the size of the marginal tables it contributed; and the resident
memory of each party process (Linux /proc): when the coordinator starts (every party serving, idle) and its
peak over the whole job (issue 13: the figure per party process that docs/operations.md quotes).
Usage: python scripts/bench_demo.py [--parties 3] [--rows 30000] [--epsilon 1] [--out out/bench-demo]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom_cli.main import main as cleanroom  # noqa: E402


def _processes(marker: str) -> dict[int, str]:
    """PID -> command line of the running processes whose command line contains `marker` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in line:
                found[int(entry.name)] = line
    return found


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PartyMemory(threading.Thread):
    """Samples the party processes of a demo in `out`: RSS when the coordinator starts, and peak RSS."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.marker, self.coordinator = f"party serve --config {out.resolve()}", f"--config {out.resolve()}"
        self.idle: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            parties = _processes(self.marker)
            coordinating = any("coordinator run" in c for c in _processes(self.coordinator).values())
            for pid in parties:
                rss, hwm = _status_kib(pid, "VmRSS"), _status_kib(pid, "VmHWM")
                if rss is not None and coordinating and pid not in self.idle:
                    self.idle[pid] = rss
                if hwm is not None:
                    self.peak[pid] = max(self.peak.get(pid, 0), hwm)

    def report(self) -> str:
        if not self.peak:
            return "party memory: not measured (needs Linux /proc)"
        idle = sorted(self.idle.values()) or [0]
        peak = sorted(self.peak.values())
        return (
            f"party process resident memory: {idle[len(idle) // 2] / 1024:.0f} MiB median when the "
            f"coordinator starts (all serving), peak {peak[-1] / 1024:.0f} MiB over the job "
            f"({len(peak)} processes)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--out", default="out/bench-demo")
    args = parser.parse_args()
    memory = PartyMemory(Path(args.out))
    memory.start()
    start = time.perf_counter()
    status = cleanroom(["demo", "--parties", str(args.parties), "--rows", str(args.rows),
                        "--epsilon", str(args.epsilon), "--out", args.out])  # fmt: skip
    wall = time.perf_counter() - start
    memory.done.set()
    memory.join()
    if status != 0:
        print(f"demo failed with status {status}")
        return status
    record = json.loads((Path(args.out) / "_work" / "coordinator" / "job.json").read_text())
    tables = int(record["table_bytes_per_party"])
    worst = max(u["bytes_uploaded"] for u in record["uploads"].values()) / tables
    print(f"wall {wall:.1f} s (target < 60 s): {'ok' if wall < 60 else 'MISSED'}")
    print(f"largest upload / tables {worst:.3f}x (target <= 2x): {'ok' if worst <= 2 else 'MISSED'}")
    print(memory.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
