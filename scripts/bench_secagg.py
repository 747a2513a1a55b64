"""Benchmark of secure aggregation: per-party CPU time and bytes sent per stage, coordinator CPU time.

Runs whole in-process rounds (cleanroom.secagg.local) for each vector length and party count and prints one
block per configuration. Targets (issue): a party masks a 10^6-cell vector with 9 peers in under 1 s, and
sends at most 1.1x the raw vector (8 bytes/cell) plus O(n) key material.

    /work/venv/bin/python scripts/bench_secagg.py                      # lengths 1e4,1e5,1e6 x n 3,10,50
    /work/venv/bin/python scripts/bench_secagg.py --lengths 10000 --parties 3 10 --dropouts 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom.secagg.local import LocalRound, make_test_collaboration  # noqa: E402
from cleanroom.secagg.messages import Stage  # noqa: E402


def bench(length: int, n: int, dropouts: int) -> dict[str, float]:
    manifest, keys = make_test_collaboration(n)
    rng = np.random.default_rng(0)
    vector = rng.integers(0, 1000, size=length, dtype=np.int64)
    inputs = {p: vector for p in manifest.parties}  # one shared array keeps memory at O(length)
    drops = {p: Stage.SHARE_KEYS for p in manifest.parties[n - dropouts :]}
    local = LocalRound(manifest, keys)
    wall = time.perf_counter()
    result = local.run(inputs, drop_after=drops)
    wall = time.perf_counter() - wall
    expected = vector.astype(np.int64) * (n - dropouts)
    assert np.array_equal(result.total, expected), "secure aggregation returned a wrong sum"
    raw = 8 * length
    print(f"\n== length {length:,}  n {n}  t {manifest.threshold}  dropped {dropouts}  wall {wall:.2f}s")
    header = f"{'stage':<18}{'party CPU mean s':>18}{'party CPU max s':>17}{'bytes/party':>14}"
    print(header + f"{'coord CPU s':>13}")
    totals = {p: 0 for p in manifest.parties}
    for stage in Stage:
        cpu = [result.party_cpu[p][stage] for p in manifest.parties if stage in result.party_cpu[p]]
        sent = [result.party_bytes[p][stage] for p in manifest.parties if stage in result.party_bytes[p]]
        for p in manifest.parties:
            totals[p] += result.party_bytes[p].get(stage, 0)
        print(
            f"{stage.value:<18}{statistics.fmean(cpu):>18.4f}{max(cpu):>17.4f}"
            f"{statistics.fmean(sent):>14,.0f}{result.server_cpu[stage]:>13.4f}"
        )
    survivor_total = max(totals.values())
    overhead = survivor_total - raw
    print(
        f"bytes sent by a surviving party: {survivor_total:,} = {survivor_total / raw:.4f} x raw vector "
        f"({raw:,} B) + {overhead:,} B of keys/shares/signatures"
    )
    masking = statistics.fmean(result.party_cpu[p][Stage.MASKED_INPUT] for p in result.survivors)
    print(f"masking with {len(result.survivors) - 1 + dropouts} peers: {masking:.4f} s per party")
    return {"masking": masking, "ratio": survivor_total / raw}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--parties", type=int, nargs="+", default=[3, 10, 50])
    parser.add_argument("--dropouts", type=int, default=0, help="parties that drop after ShareKeys")
    args = parser.parse_args()
    for length in args.lengths:
        for n in args.parties:
            bench(length, n, min(args.dropouts, n - (n // 2 + 1)))


if __name__ == "__main__":
    main()
