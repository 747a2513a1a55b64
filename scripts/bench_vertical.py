"""Cost of a vertical collaboration: 2 party processes x ROWS rows x 7 columns, over gRPC with mutual TLS.

Prints the end-to-end wall time, the per-stage timings, and the bytes each party sent with the breakdown
PSI / cross-party tables (encrypted lists, aggregates, released tables) / rest (handshake, results), then
(`--micro`) the Paillier encryption variants on this machine: phe's own encrypt, DJN with a fixed-base
table mod n^2 (what a party uses for its noise under the other's key), and the key owner's CRT fixed-base
encryption (what it uses for its own list).

Usage: PYTHONPATH=. python scripts/bench_vertical.py [--rows 30000] [--overlap 0.8] [--epsilon 1]
       [--out /tmp/cleanroom_bench_vertical] [--micro]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanroom_cli import local
from cleanroom_cli.vertical_local import vertical_job

LEVELS = 8  # per column: 7 bins or categories + __missing__; 7 columns x 8 + is_real = 57 slots <= 63
AIRLINE = ("flights", "miles", "cabin", "tenure", "routes", "upgrades", "bags")
HOTEL = ("stays", "spend", "loyalty", "nights", "suites", "region", "high_value")


def column(name: str, target: bool = False) -> dict[str, Any]:
    if target:
        return {"name": name, "type": "categorical", "categories": ["no", "yes"], "target": True}
    return {"name": name, "type": "numerical", "lower": 0, "upper": 70, "bins": list(range(0, 71, 10))}


def schema() -> dict[str, Any]:
    columns = [{"name": "email", "type": "identifier", "join_key": True}]
    columns += [column(c) for c in AIRLINE] + [column(c, c == "high_value") for c in HOTEL]
    return {"columns": columns, "policy": {"out_of_range": "clip", "missing": "level"}}


def parties(rows: int, overlap: float, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    shared = int(rows * overlap)
    total = shared + 2 * (rows - shared)
    latent = rng.normal(0, 1, total)
    data: dict[str, Any] = {"email": [f"c{i:07d}@example.com" for i in range(total)]}
    for name in AIRLINE + HOTEL[:-1]:
        data[name] = np.clip(35 + 12 * latent + rng.normal(0, 10, total), 0, 70).round()
    data["high_value"] = np.where(latent + rng.normal(0, 0.8, total) > 0.8, "yes", "no")
    frame = pd.DataFrame(data)
    index = {"airline": list(range(rows)), "hotel": list(range(shared)) + list(range(rows, total))}
    cols = {"airline": AIRLINE, "hotel": HOTEL}
    return {p: frame.iloc[i][["email", *cols[p]]].sample(frac=1.0, random_state=seed).reset_index(drop=True)
            for p, i in index.items()}  # fmt: skip


def micro() -> None:
    from phe import paillier

    from cleanroom.vertical.paillier import PaillierPrivate, PaillierPublic

    start = time.perf_counter()
    key = PaillierPrivate.generate()
    print(f"key generation + owner tables: {time.perf_counter() - start:.2f} s")
    public = PaillierPublic(key.public_key())
    public.encrypt(1)  # builds the fixed-base table
    phe_key = paillier.PaillierPublicKey(key.public_key().n)
    for label, encrypt, count in (
        ("phe encrypt (r^n mod n^2)", phe_key.raw_encrypt, 100),
        ("DJN fixed base mod n^2 (public key)", public.encrypt, 400),
        ("DJN owner CRT fixed base (own list)", key.encrypt_own, 2000),
    ):
        start = time.perf_counter()
        for i in range(count):
            encrypt(i)
        print(f"  {label:<40} {1000 * (time.perf_counter() - start) / count:7.3f} ms per ciphertext")
    ciphertext = key.encrypt_own(5)
    start = time.perf_counter()
    for _ in range(100):
        key.decrypt(ciphertext)
    print(f"  {'decryption (phe, CRT)':<40} {10 * (time.perf_counter() - start):7.3f} ms")


def run_warm(job: local.LocalJob) -> int:
    """The local runner, pausing until both parties finished their offline phase."""
    import asyncio
    import subprocess
    import sys

    configs = local.prepare(job)
    procs = local.start_parties(job, configs)
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        started = time.perf_counter()
        logs = [job.work / "logs" / f"{p}.log" for p in configs]
        while not all("prepared the next job" in p.read_text(errors="replace") for p in logs):
            time.sleep(1)
        print(f"[bench] offline phase done after {time.perf_counter() - started:.1f} s; the job starts now")
        command = [sys.executable, "-m", "cleanroom_cli.main", "coordinator", "run", "--config",
                   str(job.work / "collaboration.toml")]  # fmt: skip
        start = time.perf_counter()
        status = subprocess.run(command, env=local._env(), cwd=job.work).returncode
        print(f"[bench] online (job) wall {time.perf_counter() - start:.1f} s")
        return status
    finally:
        local.stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--overlap", type=float, default=0.8)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cleanroom_bench_vertical"))
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--warm", action="store_true",
                        help="start the job once the parties prepared their keys and randomizers")
    args = parser.parse_args()
    if args.micro:
        micro()
        return
    shutil.rmtree(args.out, ignore_errors=True)
    namespace = argparse.Namespace(out=str(args.out), epsilon=args.epsilon, delta=1e-9, format="csv", seed=0)
    columns = {"airline": list(AIRLINE), "hotel": list(HOTEL)}
    data = parties(args.rows, args.overlap, seed=0)
    job = vertical_job(namespace, schema(), dict(data), columns, "high_value", "classification", args.rows,
                       args.rows)  # fmt: skip
    start = time.perf_counter()
    status = run_warm(job) if args.warm else local.run_local(job)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"the run failed with status {status}")
    record = json.loads((job.work / "coordinator" / "job.json").read_text())
    print(
        f"\n2 parties x {args.rows} rows x 7 columns, overlap {args.overlap:.0%}: "
        f"wall {wall:.1f} s end to end"
    )
    for stage, seconds in record["timings_s"].items():
        print(f"  {stage:<12} {seconds:8.2f} s")
    print("bytes sent by each party (PSI / cross-party tables / rest) and to it:")
    for party, data_bytes in record["vertical"]["bytes"].items():
        up, down = data_bytes["received_from_party"], data_bytes["sent_to_party"]
        total = sum(up.values())
        print(f"  {party:<8} sent {up['psi']:>12,} / {up['tables']:>12,} / {up['rest']:>9,} B "
              f"(total {total / 2**20:.1f} MiB); received {sum(down.values()) / 2**20:.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
