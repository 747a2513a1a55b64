"""Benchmark the MST synthesizer: TSTR AUC, marginal TVD, wall time and peak memory at several epsilons.

    python scripts/bench_quality.py --adult            # /work/shared/data/adult (train, holdout, schema)
    python scripts/bench_quality.py                    # toy data from a known tree (until sample_data lands)

TSTR: HistGradientBoostingClassifier trained on the synthetic codes, AUC on the real holdout's codes;
train-on-real is the same classifier trained on the real training codes. TVD: mean over every 1-way and
2-way marginal of half the L1 distance between synthetic and real (training) distributions.
Wall time and peak memory cover one synthesis (fit + sample); peak memory is the process's ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
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
from cleanroom.synth import synthesize  # noqa: E402
from cleanroom.synth.centralised import count_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the shared folder sits beside the checkout (or beside the worktrees' folder)
ADULT_CANDIDATES = [
    ROOT / ".." / "shared" / "data" / "adult",
    ROOT / ".." / ".." / "shared" / "data" / "adult",
]
ADULT = next((p for p in ADULT_CANDIDATES if p.is_dir()), ADULT_CANDIDATES[0])


def encode_local(schema: dict, df: pd.DataFrame) -> tuple[Domain, np.ndarray]:
    """Codes by the schema (right-open bins, last closed, clip; categories then __missing__).

    TODO: replace with cleanroom.encoding.encode once it lands.
    """
    names, sizes, columns = [], [], []
    for col in schema["columns"]:
        values = df[col["name"]]
        missing = values.isna().to_numpy()
        if col["type"] == "numerical":
            edges = np.asarray(col["bins"], dtype=float)
            clipped = np.clip(values.to_numpy(dtype=float), edges[0], edges[-1])
            code = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, len(edges) - 2)
            levels = len(edges) - 1
        else:
            lookup = {c: i for i, c in enumerate(col["categories"])}
            code = np.array([lookup.get(str(v), -1) for v in values])
            if np.any((code < 0) & ~missing):
                raise ValueError(f"column {col['name']}: unknown categories")
            levels = len(lookup)
        code = np.where(missing, levels, code)
        names.append(col["name"])
        sizes.append(levels + 1)
        columns.append(code)
    return Domain(tuple(names), tuple(sizes)), np.stack(columns, axis=1).astype(np.int64)


def toy_data(rng: np.random.Generator, n: int) -> tuple[Domain, np.ndarray, np.ndarray, str]:
    sizes = {"x0": 6, "x1": 5, "x2": 8, "x3": 4, "x4": 10, "y": 2}
    codes = np.zeros((n, len(sizes)), dtype=np.int64)
    codes[:, 0] = rng.integers(0, 6, n)
    codes[:, 1] = (codes[:, 0] + rng.integers(0, 2, n)) % 5
    codes[:, 2] = (2 * codes[:, 1] + rng.integers(0, 3, n)) % 8
    codes[:, 3] = (codes[:, 0] // 2 + (rng.random(n) < 0.2)) % 4
    codes[:, 4] = (codes[:, 2] + rng.integers(0, 4, n)) % 10
    codes[:, 5] = ((codes[:, 2] > 3) ^ (rng.random(n) < 0.15)).astype(np.int64)
    domain = Domain(tuple(sizes), tuple(sizes.values()))
    cut = int(0.8 * n)
    return domain, codes[:cut], codes[cut:], "y"


def load(args: argparse.Namespace) -> tuple[Domain, np.ndarray, np.ndarray, str, int]:
    if args.adult:
        schema = json.loads((ADULT / "schema.json").read_text())
        domain, train = encode_local(schema, pd.read_csv(ADULT / "train.csv"))
        _, holdout = encode_local(schema, pd.read_csv(ADULT / "holdout.csv"))
        return domain, train, holdout, "income", 1
    domain, train, holdout, target = toy_data(np.random.default_rng(1), 20000)
    return domain, train, holdout, target, 1


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
