"""Benchmark the MST synthesizer: TSTR AUC, marginal TVD, wall time and peak memory at several epsilons.

    python scripts/bench_quality.py --adult            # /work/shared/data/adult (train, holdout, schema)
    python scripts/bench_quality.py                    # the built-in sample data (cleanroom.sample_data)

TSTR: HistGradientBoostingClassifier trained on the synthetic codes, AUC on the real holdout's codes;
train-on-real is the same classifier trained on the real training codes. TVD: mean over every 1-way and
2-way marginal of half the L1 distance between synthetic and real (training) distributions.
Wall time and peak memory cover one synthesis (fit + sample); peak memory is the process's ru_maxrss.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom.accounting import cdp_rho  # noqa: E402
from cleanroom.domain import Domain  # noqa: E402
from cleanroom.encoding import encode  # noqa: E402
from cleanroom.marginals import count_table  # noqa: E402
from cleanroom.sample_data import generate, sample_schema  # noqa: E402
from cleanroom.schema import Schema  # noqa: E402
from cleanroom.synth import synthesize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the shared folder sits beside the checkout (or beside the worktrees' folder)
ADULT_CANDIDATES = [
    ROOT / ".." / "shared" / "data" / "adult",
    ROOT / ".." / ".." / "shared" / "data" / "adult",
]
ADULT = next((p for p in ADULT_CANDIDATES if p.is_dir()), ADULT_CANDIDATES[0])


def positive_level(schema: Schema, target: str) -> int:
    """Code of the positive class: the second of a two-category target (">50K", "yes"), else the last."""
    categories = [level for level in schema.column(target).levels if not level.startswith("__")]
    return schema.column(target).levels.index(categories[1] if len(categories) == 2 else categories[-1])


def load(args: argparse.Namespace) -> tuple[Domain, np.ndarray, np.ndarray, str, int]:
    if args.adult:
        schema = Schema.load(ADULT / "schema.json")
        train = encode(schema, pd.read_csv(ADULT / "train.csv"), source="train.csv").codes
        holdout = encode(schema, pd.read_csv(ADULT / "holdout.csv"), source="holdout.csv").codes
    else:
        schema = sample_schema()
        data = encode(schema, generate(args.rows, seed=args.seed + 1), source="sample_data").codes
        cut = int(0.8 * len(data))
        train, holdout = data[:cut], data[cut:]
    target = schema.target
    if target is None:
        sys.exit("the schema has no target column")
    train, holdout = train.astype(np.int64), holdout.astype(np.int64)
    return schema.domain, train, holdout, target, positive_level(schema, target)


def tstr_auc(domain: Domain, train: np.ndarray, holdout: np.ndarray, target: str, positive: int) -> float:
    j = domain.index(target)
    features = [i for i in range(len(domain)) if i != j]
    y = train[:, j] == positive
    if y.all() or not y.any():
        return float("nan")
    model = HistGradientBoostingClassifier(random_state=0, categorical_features=None)
    model.fit(train[:, features], y)
    return float(roc_auc_score(holdout[:, j] == positive, model.predict_proba(holdout[:, features])[:, 1]))


def mean_tvd(domain: Domain, real: np.ndarray, synthetic: np.ndarray) -> float:
    cliques = [(a,) for a in domain.attrs] + list(combinations(domain.attrs, 2))
    tvds = []
    for clique in cliques:
        p = count_table(real, domain, clique) / len(real)
        q = count_table(synthetic, domain, clique) / max(len(synthetic), 1)
        tvds.append(0.5 * float(np.abs(p - q).sum()))
    return float(np.mean(tvds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--adult", action="store_true", help="use /work/shared/data/adult")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--delta", type=float, default=1e-9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=20000, help="rows of sample data (without --adult)")
    args = parser.parse_args()
    if args.adult and not ADULT.is_dir():
        sys.exit(f"adult data not found at {ADULT}")
    domain, train, holdout, target, positive = load(args)
    print(f"rows train={len(train)} holdout={len(holdout)} attrs={len(domain)} shape={domain.shape}")
    print(f"train-on-real AUC: {tstr_auc(domain, train, holdout, target, positive):.4f}")
    print("epsilon  rho       TSTR_AUC  mean_TVD  wall_s  peak_MiB")
    for epsilon in args.epsilons:
        rho = cdp_rho(epsilon, args.delta)
        start = time.perf_counter()
        synthetic = synthesize(domain, train, rho, len(train), np.random.default_rng(args.seed))
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        auc = tstr_auc(domain, synthetic, holdout, target, positive)
        tvd = mean_tvd(domain, train, synthetic)
        print(f"{epsilon:<8} {rho:<9.5f} {auc:<9.4f} {tvd:<9.4f} {wall:<7.2f} {peak:.0f}")


if __name__ == "__main__":
    main()
