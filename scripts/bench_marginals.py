"""Benchmark: marginal counting throughput on 1M encoded rows (1-way and 2-way cliques).

Prints row-cells per second, where one row-cell is one row counted into one clique's table (so a pass of
1M rows over 10 cliques is 10M row-cells). Target: >= 50M row-cells/s per core. Also times `encode` of the
demo data. Run: `python scripts/bench_marginals.py [--rows 1000000]`.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time
from collections.abc import Callable

import numpy as np

from cleanroom.domain import Domain
from cleanroom.encoding import encode
from cleanroom.marginals import count_tables
from cleanroom.sample_data import generate, sample_schema


def best_of(repeats: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    schema = sample_schema()
    frame = generate(args.rows, seed=0)
    encode_seconds = best_of(1, lambda: encode(schema, frame, source="bench"))
    print(
        f"encode: {args.rows:,} rows x {len(schema.domain)} columns in {encode_seconds:.2f} s "
        f"({args.rows / encode_seconds / 1e6:.2f} M rows/s)"
    )
    codes = encode(schema, frame, source="bench").codes
    domain: Domain = schema.domain
    print(f"codes dtype {codes.dtype}, domain sizes {domain.shape}")
    one_way: list[tuple[str, ...]] = [(a,) for a in domain.attrs]
    two_way: list[tuple[str, ...]] = list(itertools.combinations(domain.attrs, 2))
    for label, cliques in (("1-way", one_way), ("2-way", two_way)):
        seconds = best_of(args.repeats, functools.partial(count_tables, codes, domain, cliques))
        row_cells = args.rows * len(cliques)
        rate = row_cells / seconds / 1e6
        print(f"{label}: {len(cliques)} cliques, {seconds:.3f} s, {rate:.1f} M row-cells/s")
    total = sum(int(t.sum()) for t in count_tables(codes, domain, one_way))
    assert total == args.rows * len(one_way), "counts lost rows"
    print(f"single thread (np.bincount); numpy {np.__version__}")


if __name__ == "__main__":
    main()
