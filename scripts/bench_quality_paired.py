"""Paired quality comparisons for tuning: the federated path of `bench_quality.py` with seeded noise.

    nice python scripts/bench_quality_paired.py --data bike_sharing --eps 1 --seeds 0 1 2 --settings '{}'
    nice python scripts/bench_quality_paired.py --synth mst

Every party's noise share is a rounded Gaussian of the planned variance from a generator seeded by the run's
seed (not the secure sampler: for comparing two configurations on the same noise, never for a release), so
a difference between configurations is not a difference between noise draws. Prints, per dataset and
epsilon, median and worst TSTR and median and worst mean 2-way TVD (evaluation share 0.1 and the membership
holdout as in the default plan).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_quality as bq  # noqa: E402

from cleanroom.accounting import NoiseLayout, cdp_rho  # noqa: E402
from cleanroom.encoding import decode  # noqa: E402
from cleanroom.evaluation import release  # noqa: E402


def seeded_noise(seed: int) -> Any:
    rng = np.random.default_rng(10_000 + seed)

    def share(size: int, sigma_party2: Any, draws: int = 1) -> np.ndarray:
        return np.rint(rng.normal(0, float(sigma_party2) ** 0.5, size)).astype(np.int64)

    return share


def one_run(
    job: tuple[str, float, int, dict[str, Any], str, float, float | None],
) -> tuple[str, float, float, float, float]:
    name, epsilon, seed, settings, synthesizer, share, holdout = job
    bq.party_noise_share = seeded_noise(seed)
    data = bq.load_dataset(bq.data_root(None) / name)
    job_rho = cdp_rho(epsilon, 1e-9)
    result = bq.run_synthesis(
        bq.SynthesisJob(
            data.schema, data.codes, synthesizer, settings, job_rho * (1 - share), 3, 2, holdout != 0, seed,
            holdout, job_rho, share or 0.1, NoiseLayout.for_plan(3, 1, 0).shares,
        )
    )
    frame = decode(data.schema, result.codes, np.random.default_rng(seed))
    model = bq.train(frame.iloc[: release.synthetic_holdout_start(len(frame))], data)
    _, tvd2 = bq.mean_tvds(data.schema.domain, data.codes, result.codes)
    return name, epsilon, bq.tstr(model, data), tvd2, result.wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=list(bq.SUITE))
    parser.add_argument("--eps", nargs="+", type=float, default=[1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--settings", default="")
    parser.add_argument("--synth", default="adaptive")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--holdout", type=float, default=None, help="fixed (0: none); default: sized")
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    settings = bq.parse_settings(args.settings)
    jobs = [
        (n, e, s, settings, args.synth, args.share, args.holdout)
        for n in args.data
        for e in args.eps
        for s in args.seeds
    ]
    with get_context("spawn").Pool(args.procs, maxtasksperchild=1) as pool:
        results = pool.map(one_run, jobs, chunksize=1)
    for name in args.data:
        for epsilon in args.eps:
            runs = [r for r in results if r[0] == name and r[1] == epsilon]
            scores, tvds = [r[2] for r in runs], [r[3] for r in runs]
            print(
                f"{name:15s} eps {epsilon:<4g} TSTR median {statistics.median(scores):.3f} worst "
                f"{min(scores):.3f} | 2-way TVD median {statistics.median(tvds):.4f} worst {max(tvds):.4f} | "
                f"wall max {max(r[4] for r in runs):.1f} s | " + " ".join(f"{x:.3f}" for x in scores),
                flush=True,
            )


if __name__ == "__main__":
    main()
