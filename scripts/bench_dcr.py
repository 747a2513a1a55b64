"""Benchmark the DCR attack's distance search: capped Hamming distance on binned codes, 30k x 30k rows.

    nice .venv/bin/python scripts/bench_dcr.py [--rows 30000] [--synthetic 30000] [--attributes 15]

The data mimic a binned census table (attribute sizes like Adult's, skewed level frequencies). Two cases:
"related": half the synthetic rows are query rows with 0 to 4 attributes resampled (every capped distance
occurs, as with a synthesizer that learnt the data); "unrelated" (the worst case): the synthetic rows are
resampled from other rows, so almost no query is within distance 2 and every mask is tried for every query.
Prints the wall and CPU time of `capped_hamming_distances` (best of --repeats; CPU time is the figure to read
on a shared machine) and checks it against a brute-force search on a sample of queries.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cleanroom.evaluation.membership import DCR_MAX_DISTANCE, capped_hamming_distances

ADULT_LIKE_SIZES = (10, 9, 10, 17, 16, 8, 16, 7, 6, 3, 10, 10, 10, 42, 3, 5, 4, 12, 6, 9, 11, 4, 3, 8)


def rows(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Skewed levels (Zipf-like), so common rows repeat as in real data."""
    columns = []
    for size in shape:
        weights = 1.0 / np.arange(1, size + 1) ** 1.2
        columns.append(rng.choice(size, n, p=weights / weights.sum()))
    return np.stack(columns, axis=1).astype(np.int64)


def perturbed(base: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    out = base.copy()
    changes = rng.integers(0, 5, len(out))
    for i, k in enumerate(changes):
        for j in rng.choice(len(shape), k, replace=False):
            out[i, j] = rng.integers(0, shape[j])
    return out


def brute_force(query: np.ndarray, synthetic: np.ndarray, cap: int) -> np.ndarray:
    return np.array([min(int((synthetic != q).sum(axis=1).min()), cap) for q in query], dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--synthetic", type=int, default=30_000)
    parser.add_argument("--attributes", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", type=int, default=300, help="queries checked by brute force")
    args = parser.parse_args()
    shape = ADULT_LIKE_SIZES[: args.attributes]
    for case in ("related", "unrelated"):
        rng = np.random.default_rng(0)
        population = rows(args.rows + args.synthetic, shape, rng)
        query, others = population[: args.rows], population[args.rows :]
        if case == "related":
            half = args.synthetic // 2
            others = np.concatenate([query[rng.choice(args.rows, half)], others[half:]])
        run(case, query, perturbed(others, shape, rng), shape, args, rng)


def run(
    case: str,
    query: np.ndarray,
    synthetic: np.ndarray,
    shape: tuple[int, ...],
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> None:
    times, cpu = [], []
    for _ in range(args.repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        distances = capped_hamming_distances(query, synthetic, shape)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    sample = rng.choice(args.rows, min(args.check, args.rows), replace=False)
    exact = brute_force(query[sample], synthetic, DCR_MAX_DISTANCE)
    histogram = np.bincount(distances, minlength=DCR_MAX_DISTANCE + 1).tolist()
    print(
        f"{case}: capped_hamming_distances: {args.rows:,} x {args.synthetic:,} rows, "
        f"{len(shape)} attributes, "
        f"cap {DCR_MAX_DISTANCE}: best {min(times):.3f} s wall, {min(cpu):.3f} s CPU (of {args.repeats}: "
        f"{', '.join(f'{t:.3f}' for t in times)} s wall)"
    )
    agree = bool(np.array_equal(distances[sample], exact))
    print(
        f"  distance histogram 0..{DCR_MAX_DISTANCE}: {histogram}; brute-force check on {len(sample)} "
        f"queries: {'identical' if agree else 'MISMATCH'}"
    )
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
