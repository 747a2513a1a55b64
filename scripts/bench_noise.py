"""Benchmark of the exact discrete Gaussian sampler: seconds to noise 10^4..10^6 cells at several sigma.

Target: one party noises a 1,000,000-cell vector in under 1 second. Usage:
    /work/venv/bin/python scripts/bench_noise.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from cleanroom.noise import sample_discrete_gaussian  # noqa: E402

SIGMAS = (2, 10, 1000, 10**5)
SIZES = (10**4, 10**5, 10**6)


def best_time(sigma2: Fraction, size: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        sample_discrete_gaussian(sigma2, size)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the best is shown")
    args = parser.parse_args()
    header = " ".join(f"{size:>12,d}" for size in SIZES)
    print(f"{'sigma':>8} {header}   (seconds, best of {args.repeat})")
    for sigma in SIGMAS:
        times = [best_time(Fraction(sigma * sigma), size, args.repeat) for size in SIZES]
        print(f"{sigma:>8} " + " ".join(f"{t:>12.3f}" for t in times))
    slowest = max(best_time(Fraction(s * s), 10**6, 1) for s in SIGMAS)
    verdict = "within" if slowest < 1 else "OVER"
    print(f"10^6 cells, slowest sigma, single run: {slowest:.3f} s ({verdict} the 1 s target)")


if __name__ == "__main__":
    main()
