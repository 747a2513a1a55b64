"""One whole job through real processes, stage by stage: wall time, CPU time and peak memory of every process.

Runs `cleanroom simulate`'s code path (party processes and a coordinator process over gRPC with mutual TLS)
on UCI Adult split into `--parties` party CSVs (or, with `--demo`, on the generated sample data), `--repeat`
times, and prints per stage (parties ready, coordinator start-up, handshake, each round, fit, sample, train,
staging, each evaluation round, combine, deliver, shutdown) the wall seconds and the CPU seconds spent in the
coordinator and in the party processes during it, then per process its CPU seconds and peak RSS (from
wait4). CPU is sampled from /proc every 20 ms and split at the stage boundaries of the coordinator's job log.
The machine may be shared: the CPU columns are the figures to compare; wall times are medians.

`--profile` adds one run with every process under cProfile and prints each process's top functions by
cumulative time (the profiler slows the run down; its wall times are not comparable; cProfile sees each
process's main thread only, so work in worker threads shows in the CPU columns, not in these lists).

Usage: nice .venv/bin/python scripts/bench_job.py [--repeat 3] [--profile] [--demo --parties 50 --rows 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import pstats
import shutil
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cleanroom_cli import local  # noqa: E402

DATA = Path("/work/shared/data/adult")
TICKS = os.sysconf("SC_CLK_TCK")


class CpuSampler(threading.Thread):
    """Polls utime + stime of the job's processes (`LocalJob.pids`, filled as run_local starts them)."""

    def __init__(self, job: local.LocalJob, period_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.job = job
        self.period_s = period_s
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.worker_peaks: dict[str, float] = {}
        self.done = threading.Event()

    def workers(self) -> dict[str, int]:
        """Child processes of the coordinator (its model worker), found by their parent pid."""
        coordinator = self.job.pids.get("coordinator")
        found: dict[str, int] = {}
        if coordinator is None:
            return found
        for entry in Path("/proc").iterdir():
            try:
                fields = (
                    (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
                )
            except OSError:
                continue
            if fields and int(fields[1]) == coordinator:
                found[f"coordinator worker {len(found) + 1}"] = int(entry.name)
        return found

    def run(self) -> None:
        workers: dict[str, int] = {}
        last_scan = 0.0
        while not self.done.is_set():
            now = time.time()
            if now - last_scan > 0.2:
                workers.update({k: v for k, v in self.workers().items() if v not in workers.values()})
                last_scan = now
            for name, pid in [*self.job.pids.items(), *workers.items()]:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                cpu = (int(fields[11]) + int(fields[12])) / TICKS
                self.samples.setdefault(name, []).append((now, cpu))
                if name.startswith("coordinator worker"):
                    self.worker_peaks[name] = peak_rss_mib(pid, self.worker_peaks.get(name, 0.0))
            time.sleep(self.period_s)

    def cpu_between(self, name: str, start: float, end: float) -> float:
        points = self.samples.get(name, [])
        if not points:
            return 0.0
        times = np.array([p[0] for p in points])
        cpu = np.array([p[1] for p in points])
        return float(np.interp(end, times, cpu) - np.interp(start, times, cpu))


def peak_rss_mib(pid: int, previous: float) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return previous
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return max(previous, int(line.split()[1]) / 1024)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stage_windows(
    job: local.LocalJob, launched: float, coordinator_start: float
) -> list[tuple[str, float, float]]:
    """(stage, start, end) in epoch seconds: parties ready, coordinator start-up, every logged stage, exit."""
    events = [
        json.loads(line) for line in (job.work / "coordinator" / "job-log.jsonl").read_text().splitlines()
    ]
    windows = [("parties ready", launched, coordinator_start)]
    started = next(parse_time(e["time"]) for e in events if e["event"] == "job_started")
    windows.append(("coordinator start-up", coordinator_start, started))
    previous = started
    for event in events:
        if event["event"] != "stage":
            continue
        begin, end = parse_time(event["started"]), parse_time(event["time"])
        if begin - previous > 0.005:
            windows.append(("(between stages)", previous, begin))
        windows.append((event["stage"], begin, end))
        previous = end
    windows.append(("coordinator exit", previous, coordinator_start + job.stats["coordinator"].wall_s))
    return windows


def run_once(
    args: argparse.Namespace,
    parts: dict[str, Any],
    schema: dict[str, Any],
    run: int,
    profile_dir: Path | None,
) -> dict[str, Any]:
    args.out.mkdir(parents=True, exist_ok=True)
    out = (args.out / f"run{run}").resolve()
    shutil.rmtree(out, ignore_errors=True)
    job = local.LocalJob(
        out, schema, parts, args.target, args.task, args.epsilon, 1e-9, synthetic_rows=args.synthetic_rows,
        seed=1, profile_dir=profile_dir, masking_neighbours=args.masking_neighbours,
    )  # fmt: skip
    if args.netns_prefix:  # scripts/bench_wan.sh: party i serves on 10.99.i.1 in namespace PREFIX_p<i>
        for i, pid in enumerate(parts, start=1):
            job.hosts[pid] = f"10.99.{i}.1"
            job.wrappers[pid] = ["ip", "netns", "exec", f"{args.netns_prefix}_p{i}"]
    sampler = CpuSampler(job)
    sampler.start()
    launched = time.time()
    with open(out.parent / f"run{run}.log", "w") as log, contextlib.redirect_stdout(log):
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            status = local.run_local(job)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    sampler.done.set()
    sampler.join()
    if status != 0:
        print(f"run {run} FAILED with status {status} (figures below are up to the failure); see "
              f"{out.parent}/run{run}.log")  # fmt: skip
    coordinator_start = launched + job.times["setup"] + job.times["parties_ready"]
    windows = stage_windows(job, launched + job.times["setup"], coordinator_start)
    parties = [p for p in parts]
    stages = []
    for name, begin, end in windows:
        party_cpu = [sampler.cpu_between(p, begin, end) for p in parties]
        worker_cpu = sum(sampler.cpu_between(w, begin, end) for w in sampler.worker_peaks)
        stages.append({
            "stage": name, "wall": end - begin,
            "coordinator_cpu": sampler.cpu_between("coordinator", begin, end) + worker_cpu,
            "party_cpu_mean": float(np.mean(party_cpu)), "party_cpu_max": float(np.max(party_cpu)),
        })  # fmt: skip
    job_file = job.work / "coordinator" / "job.json"
    record = (
        json.loads(job_file.read_text()) if job_file.exists() else {"uploads": {}, "table_bytes_per_party": 0}
    )
    delivered_at = next((e for n, b, e in windows if n == "deliver"), math.nan)
    return {
        "stages": stages,
        "to_delivered": delivered_at - coordinator_start,
        "coordinator_wall": job.stats["coordinator"].wall_s,
        "parties_ready": job.times["parties_ready"],
        "processes": {
            **{name: vars(s) for name, s in job.stats.items()},
            **{
                name: {
                    "cpu_s": sampler.samples[name][-1][1],
                    "peak_rss_mib": peak,
                    "pss_mib": math.nan,
                    "wall_s": math.nan,
                }
                for name, peak in sampler.worker_peaks.items()
            },
        },  # fmt: skip
        "uploads": record["uploads"],
        "table_bytes": record["table_bytes_per_party"],
        "masking_graph": record.get("masking_graph", {}),
    }


def print_runs(runs: list[dict[str, Any]], n_parties: int) -> None:
    names = [s["stage"] for s in runs[0]["stages"] if s["stage"] != "(between stages)"]
    print(
        f"\n{'stage':<22} {'wall s (median)':>16} {'coord CPU s':>12} {'party CPU s':>12} {'max party':>10}"
    )
    for name in names + ["(between stages)"]:
        rows = [[s for s in r["stages"] if s["stage"] == name] for r in runs]
        if not all(rows):
            continue
        keys = ("wall", "coordinator_cpu", "party_cpu_mean", "party_cpu_max")
        summed = [{k: sum(s[k] for s in row) for k in keys} for row in rows]
        med = {k: statistics.median(s[k] for s in summed) for k in summed[0]}
        print(
            f"{name:<22} {med['wall']:>16.2f} {med['coordinator_cpu']:>12.2f} "
            f"{med['party_cpu_mean']:>12.2f} {med['party_cpu_max']:>10.2f}"
        )
    to_delivered = [r["to_delivered"] for r in runs]
    print(
        f"\ncoordinator start -> results delivered: median {statistics.median(to_delivered):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in to_delivered)}); parties ready after "
        f"{statistics.median(r['parties_ready'] for r in runs):.2f} s; coordinator process "
        f"{statistics.median(r['coordinator_wall'] for r in runs):.2f} s"
    )
    print(f"\n{'process':<20} {'CPU s (median)':>15} {'peak RSS MiB (max)':>19} {'PSS MiB at end (max)':>21}")
    names = list(runs[0]["processes"])
    coordinators = [n for n in names if n.startswith("coordinator")]
    parties = [n for n in names if not n.startswith("coordinator")]
    shown = coordinators + (parties if n_parties <= 5 else [*parties[:2], "..."])
    for name in shown:
        if name == "...":
            rows = [r["processes"][p] for r in runs for p in parties if p in r["processes"]]
            if not rows:
                print(f"{'all parties':<20} (no figures: the processes did not exit in time)")
                continue
            cpu, rss = statistics.median(x["cpu_s"] for x in rows), max(x["peak_rss_mib"] for x in rows)
            pss = max(x["pss_mib"] for x in rows)
            print(f"{'all parties':<20} {cpu:>15.2f} {rss:>19.1f} {pss:>21.1f}  ({len(rows)} processes)")
            continue
        rows = [r["processes"][name] for r in runs if name in r["processes"]]
        if not rows:
            print(f"{name:<20} (no figures)")
            continue
        cpu, rss = statistics.median(x["cpu_s"] for x in rows), max(x["peak_rss_mib"] for x in rows)
        print(f"{name:<20} {cpu:>15.2f} {rss:>19.1f} {max(x['pss_mib'] for x in rows):>21.1f}")
    table = runs[0]["table_bytes"]
    if not table:
        return
    ratios = [u["bytes_uploaded"] / table for u in runs[0]["uploads"].values()]
    print(
        f"\nupload per party / its int64 tables ({table:,} B): max {max(ratios):.3f}x, min {min(ratios):.3f}x"
    )
    graph = runs[0].get("masking_graph") or {}
    if graph:
        kind = "sparse" if graph["sparse"] else "complete"
        print(f"masking graph: {kind}, {graph['neighbours']} neighbours, t {graph['share_threshold']}")


def print_profile(directory: Path, top: int) -> None:
    for path in sorted(directory.glob("*.prof")):
        if path.stem not in ("coordinator", "party1"):
            continue
        print(f"\n== cProfile {path.stem}: top {top} by cumulative time ==")
        text = io.StringIO()
        stats = pstats.Stats(str(path), stream=text)
        stats.sort_stats("cumulative").print_stats(top)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])


def inputs(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Party id -> data (CSV path or frame) and the schema."""
    if args.demo:
        from cleanroom.sample_data import demo_dataset

        schema, frame, args.target, args.task = demo_dataset(args.rows * args.parties, seed=0)
        args.synthetic_rows = args.rows * args.parties
        return {f"party{i + 1}": frame.iloc[i :: args.parties].reset_index(drop=True)
                for i in range(args.parties)}, schema  # fmt: skip
    schema = json.loads((args.data / "schema.json").read_text())
    args.target, args.task = "income", "classification"
    train = pd.read_csv(args.data / "train.csv")
    order = np.random.default_rng(2026).permutation(len(train))
    args.out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Any] = {}
    for i, rows in enumerate(np.array_split(order, args.parties)):
        path = args.out / f"party{i + 1}-input.csv"
        train.iloc[np.sort(rows)].to_csv(path, index=False)
        parts[f"party{i + 1}"] = path.resolve()
    return parts, schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cleanroom_bench_job"))
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="generated sample data instead of Adult")
    parser.add_argument("--rows", type=int, default=2000, help="--demo: rows per party")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--synthetic-rows", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one more run under cProfile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--netns-prefix", help="run each party in network namespace PREFIX_p<i> (bench_wan.sh)"
    )
    parser.add_argument("--json", type=Path, help="also write the runs' figures here")
    parser.add_argument(
        "--masking-neighbours", type=int, default=0,
        help="plan masking_neighbours: 0 = automatic (sparse from 9 parties), >= parties - 1 = complete",
    )  # fmt: skip
    args = parser.parse_args()
    if not args.demo and not (args.data / "train.csv").exists():
        raise SystemExit(f"{args.data} not found (pass --data, or --demo)")
    parts, schema = inputs(args)
    what = f"demo data, {args.rows} rows each" if args.demo else "Adult"
    print(f"== {len(parts)} party processes, {what}, epsilon {args.epsilon}, {args.repeat} runs ==")
    runs = [run_once(args, parts, schema, r, None) for r in range(args.repeat)]
    print_runs(runs, len(parts))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    if args.profile:
        directory = (args.out / "profile").resolve()
        shutil.rmtree(directory, ignore_errors=True)
        run_once(args, parts, schema, args.repeat, directory)
        print_profile(directory, args.top)


if __name__ == "__main__":
    main()
