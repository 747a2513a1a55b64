"""Synthetic-data quality through the federated path, on every dataset of the suite (issue 11).

    nice python scripts/bench_quality.py --suite                       # every dataset, eps 0.3/1/3, 3 seeds
    nice python scripts/bench_quality.py --datasets adult --epsilons 1 --seeds 0
    nice python scripts/bench_quality.py --suite --synthesizer mst     # the plain federated MST
    nice python scripts/bench_quality.py --suite --evaluation-share 0.1 --epsilons 1
    python scripts/bench_quality.py --sample                           # built-in sample data, no files needed

Each dataset folder under `--data` (default: the shared `data/` folder beside the checkout) holds
`schema.json` (with a target), `train.csv` and `holdout.csv`. Per (dataset, epsilon, seed), as the running
system does it:
- the job's rho is `cdp_rho(epsilon, delta)`; synthesis gets `synthesis_rho(rho, evaluation_share)`;
- the training rows are split at random over `--parties` parties; each keeps its membership holdout out
  of the marginals (unless `--no-evaluation`): sized as the party node does, from its noisy row count
  (`release.holdout_sizing`, `release.holdout_fraction`), or a fixed `--membership-holdout` fraction;
- the planner is the coordinator's (`make_planner` with the plan's n_min = parties - dropout tolerance);
  for every round each party counts its own tables (`cleanroom.marginals`) and adds its discrete-Gaussian
  share of variance sigma_total^2 / n_min (`party_noise_share`); the coordinator sums them (noise of all
  surviving shares: stddev sqrt(parties * sigma_party^2)), fits, samples as many rows as the noisy total;
- TSTR: the coordinator's pipeline (`coordinator.results.train_model`, HistGradientBoosting) trained on the
  first 80 % of the decoded synthetic rows, scored on holdout.csv: AUC (binary), macro one-vs-rest AUC
  (multi-class) or R^2 (regression); TVD: mean over all 1-way / 2-way marginals of the schema's codes of
  half the L1 distance between synthetic and real training distributions.
Every synthesis (all rounds incl. party counting and noise, fit, sample) runs in a fresh process: wall is its
duration, peak its whole resident set (ru_maxrss, interpreter and data included).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom.accounting import NoiseLayout, cdp_rho  # noqa: E402
from cleanroom.domain import Domain  # noqa: E402
from cleanroom.encoding import decode, encode  # noqa: E402
from cleanroom.evaluation import release  # noqa: E402
from cleanroom.frames import read_frame  # noqa: E402
from cleanroom.marginals import count_table, count_tables, flatten_tables, split_vector  # noqa: E402
from cleanroom.measurement import Measurement, RoundSpec  # noqa: E402
from cleanroom.noise import party_noise_share  # noqa: E402
from cleanroom.plan import Plan  # noqa: E402
from cleanroom.schema import NUMERICAL, Schema  # noqa: E402
from cleanroom.synth import DEFAULT_SYNTHESIZER, make_planner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [ROOT / ".." / "shared" / "data", ROOT / ".." / ".." / "shared" / "data"]
SUITE = ("adult", "bank_marketing", "credit_default", "bike_sharing")
# private-pgm (mbi 2.0) MST, centralised, full budget, delta 1e-9 (issue 11): (TSTR, mean 2-way TVD)
REFERENCE: dict[str, dict[float, tuple[str, float | None]]] = {
    "adult": {1.0: ("0.844", 0.041), 3.0: ("0.834", None)},
    "bank_marketing": {1.0: ("0.807", 0.029)},
    "credit_default": {1.0: ("0.724", 0.102)},
    "bike_sharing": {1.0: ("0.48-0.54", 0.066)},
}
TRAIN_ON_REAL = {"adult": 0.928, "bank_marketing": 0.936, "credit_default": 0.784, "bike_sharing": 0.950}
DEFAULT_EVALUATION_SHARE = Plan.__dataclass_fields__["evaluation_share"].default


@dataclass
class Dataset:
    name: str
    schema: Schema
    train: pd.DataFrame
    holdout: pd.DataFrame
    codes: np.ndarray

    @property
    def target(self) -> str:
        assert self.schema.target is not None
        return self.schema.target

    @property
    def task(self) -> str:
        return "regression" if self.schema.column(self.target).type == NUMERICAL else "classification"


@dataclass(frozen=True)
class SynthesisJob:
    schema: Schema
    codes: np.ndarray
    synthesizer: str
    settings: dict[str, Any]
    rho: float
    parties: int
    n_min: int
    membership_holdout: bool
    seed: int
    holdout_fraction: float | None = None  # None: sized from each party's noisy row count, as the node does
    job_rho: float = 0.0  # the whole job's rho (the sizing's share is taken from its evaluation share)
    evaluation_share: float = 0.1
    shares: int = 1  # noise draws per party (`NoiseLayout.for_plan`); every party survives and trims

    @property
    def layout(self) -> NoiseLayout:
        return NoiseLayout(self.parties, self.n_min, 0, self.shares)


@dataclass
class SynthesisResult:
    codes: np.ndarray
    wall: float
    peak_mib: float
    rho_spent: float
    rounds: list[tuple[str, int]] = field(default_factory=list)


def party_rows(job: SynthesisJob) -> list[tuple[np.ndarray, np.ndarray]]:
    """The rows split at random over the parties, each as (members, its membership holdout)."""
    rng = np.random.default_rng(job.seed)
    parts = np.array_split(rng.permutation(len(job.codes)), job.parties)
    out = []
    for index, rows in enumerate(parts):
        codes = job.codes[np.sort(rows)].astype(np.int64)
        if not job.membership_holdout:
            out.append((codes, codes[:0]))
            continue
        fraction = job.holdout_fraction
        if fraction is None:
            sizing = release.holdout_sizing(job.job_rho, job.evaluation_share)
            noise = np.random.default_rng([job.seed, index]).normal(0.0, float(sizing.sigma2) ** 0.5)
            fraction = release.holdout_fraction(len(codes) + round(noise), job.parties)
        split = release.party_membership_split(codes, f"bench-{job.seed}-{index}".encode(), fraction)
        out.append((codes[split.members], codes[split.nonmembers]))
    return out


def party_codes(job: SynthesisJob) -> list[np.ndarray]:
    """What each party counts: its rows without its membership holdout."""
    return [members for members, _ in party_rows(job)]


def federated_round(
    parties: list[np.ndarray], domain: Domain, spec: RoundSpec, layout: NoiseLayout
) -> list[Measurement]:
    """Every party counts and noises its own tables; the coordinator learns only their sum. Every party
    survives, so each keeps `layout.kept` of its draws, as the party node does after a full survivor list."""
    cliques = tuple(domain.canonical(c) for c in spec.cliques)
    sigma_party2 = Fraction(spec.sigma_total2) / layout.n_min
    kept = layout.kept(len(parties))
    total: np.ndarray | None = None
    for codes in parties:
        vector = flatten_tables(count_tables(codes, domain, list(cliques)))
        for _ in range(kept):
            vector = vector + party_noise_share(vector.size, sigma_party2 / layout.shares, layout.shares)
        total = vector if total is None else total + vector
    assert total is not None
    stddev = layout.summed_variance(sigma_party2, len(parties), len(parties)) ** 0.5
    tables = split_vector(total, domain, list(cliques))
    return [Measurement(c, t.astype(np.float64), stddev) for c, t in zip(cliques, tables, strict=True)]


def run_synthesis(job: SynthesisJob) -> SynthesisResult:
    """One whole federated synthesis (runs in a fresh process, so its peak memory is its own)."""
    parties = party_codes(job)
    domain = job.schema.domain
    start = time.perf_counter()
    planner = make_planner(job.synthesizer, job.schema, job.rho, layout=job.layout, settings=job.settings)
    measurements: list[Measurement] = []
    rounds, spent = [], 0.0
    spec = planner.first_round()
    while spec is not None:
        measurements += federated_round(parties, domain, spec, job.layout)
        rounds.append((spec.name, len(spec.cliques)))
        spent += spec.rho
        spec = planner.next_round(measurements)
    model = planner.estimate(measurements)
    totals = [float(m.noisy_values.sum()) for m in measurements if len(m.clique) == 1]
    n_rows = max(1, int(round(float(np.median(totals)))))  # coordinator.results.synthetic_rows
    synthetic = model.sample(n_rows, np.random.default_rng(job.seed))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return SynthesisResult(np.asarray(synthetic, dtype=np.int64), wall, peak, spent, rounds)


def in_fresh_process(job: SynthesisJob) -> SynthesisResult:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(run_synthesis, (job,))


# ------------------------------------------------------------------------------------------ evaluation
def train(frame: pd.DataFrame, data: Dataset) -> Any:
    """HistGradientBoosting on the rows with a known target: categories ordinal-encoded and declared
    categorical, numbers as they are (the coordinator's model, one thread)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder
    from threadpoolctl import threadpool_limits

    kinds = data.schema.column_kinds()
    x, y = release.model_inputs(frame, data.target, data.task, kinds)
    categorical = [c for c in x.columns if kinds[c] == "categorical"]
    numerical = [c for c in x.columns if kinds[c] == "numerical"]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2)
    columns = ColumnTransformer([("cat", encoder, categorical), ("num", "passthrough", numerical)])
    mask = [True] * len(categorical) + [False] * len(numerical)
    kind = HistGradientBoostingRegressor if data.task == "regression" else HistGradientBoostingClassifier
    model = Pipeline([("encode", columns), ("model", kind(categorical_features=mask, random_state=0))])
    with threadpool_limits(limits=1):
        model.fit(x, y)
    return model


def tstr(model: Any, data: Dataset) -> float:
    from sklearn.metrics import r2_score, roc_auc_score

    from cleanroom.evaluation.utility import positive_scores

    x, y = release.model_inputs(data.holdout, data.target, data.task, data.schema.column_kinds())
    if data.task == "regression":
        return float(r2_score(y.to_numpy(), model.predict(x)))
    classes = [str(c) for c in model.classes_]
    if len(set(y)) == 2:
        positive = release.positive_class(data.schema, data.target)
        if positive not in classes:
            return 0.5
        return float(roc_auc_score((y == positive).to_numpy(), positive_scores(model, x, positive)))
    proba = pd.DataFrame(model.predict_proba(x), columns=classes)
    labels = sorted(set(y))
    scores = np.column_stack([proba[c] if c in proba else np.zeros(len(x)) for c in labels])
    scores = scores / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    return float(roc_auc_score(y.to_numpy(), scores, multi_class="ovr", average="macro", labels=labels))


def mean_tvds(domain: Domain, real: np.ndarray, synthetic: np.ndarray) -> tuple[float, float]:
    def tvd(clique: tuple[str, ...]) -> float:
        p = count_table(real, domain, clique) / len(real)
        q = count_table(synthetic, domain, clique) / max(len(synthetic), 1)
        return 0.5 * float(np.abs(p - q).sum())

    one = [tvd((a,)) for a in domain.attrs]
    two = [tvd(pair) for pair in combinations(domain.attrs, 2)]
    return float(np.mean(one)), float(np.mean(two))


def statistic_stddev(
    statistic: str, data: Dataset, job_rho: float, share: float, layout: NoiseLayout
) -> float:
    """Noise sd in the summed vector of an evaluation statistic, calibrated as the coordinator does."""
    domain, task = data.schema.domain, data.task
    length = release.statistic_length(statistic, domain, task)
    sensitivity = release.statistic_sensitivity_l2(statistic, domain, task)
    rho = release.statistic_rho(job_rho, share, statistic)
    sigma_total2 = layout.calibrate(rho, sensitivity, dim=length)
    parties = layout.n_parties
    return layout.summed_variance(Fraction(sigma_total2) / layout.n_min, parties, parties) ** 0.5


def attack_score_stddev(
    job: SynthesisJob, synthetic: np.ndarray, data: Dataset, job_rho: float, share: float
) -> float:
    """Noise sd of the combined DCR membership-inference score the release gate reads: the attack run on
    the pooled members and membership holdouts, its summed vector blurred as the coordinator calibrates."""
    from cleanroom.evaluation.membership import dcr_score_stddev, run_dcr_attack

    rows = party_rows(job)
    members = np.concatenate([m for m, _ in rows])
    nonmembers = np.concatenate([h for _, h in rows])
    outcome = run_dcr_attack(members, nonmembers, synthetic, data.schema.domain.shape)
    sd = statistic_stddev(release.ATTACK_DCR, data, job_rho, share, job.layout)
    return dcr_score_stddev(outcome.statistics, sd)


def evaluation_noise(
    model: Any, synthetic: np.ndarray, data: Dataset, job_rho: float, share: float, layout: NoiseLayout
) -> tuple[float, float]:
    """How much the evaluation budget share blurs the report: the sd of the reported utility (AUC or R^2,
    scored on the real training rows) and of the reported mean 2-way TVD, over 200 noise draws."""
    from cleanroom.evaluation import fidelity, utility

    rng = np.random.default_rng(0)
    x, y = release.model_inputs(data.train, data.target, data.task, data.schema.column_kinds())
    sd = statistic_stddev(release.UTILITY, data, job_rho, share, layout)
    if data.task == "regression":
        bounds = release.target_bounds(data.schema, data.target)
        vector = utility.regression_statistics(y.to_numpy(), model.predict(x), bounds)
        metric = [utility.regression_metrics_from_vector(vector + rng.normal(0, sd, vector.size), bounds).r2
                  for _ in range(200)]  # fmt: skip
    else:
        positive = release.positive_class(data.schema, data.target)
        scores = utility.positive_scores(model, x, positive)
        vector = utility.classification_statistics((y == positive).to_numpy(), scores)
        metric = [utility.classification_metrics_from_vector(vector + rng.normal(0, sd, vector.size)).auc
                  for _ in range(200)]  # fmt: skip
    cliques = release.fidelity_cliques(data.schema.domain)
    tvd = fidelity.tvd_statistics(data.codes, synthetic, data.schema.domain, cliques)
    sd = statistic_stddev(release.FIDELITY, data, job_rho, share, layout)
    means = [
        fidelity.combined_tvd(tvd + rng.normal(0, sd, tvd.size), data.schema.domain, cliques).summary()[
            "mean_two_way_tvd"
        ]
        for _ in range(200)
    ]
    return float(np.nanstd(metric)), float(np.nanstd(means))


# ------------------------------------------------------------------------------------------ data
def data_root(given: Path | None) -> Path:
    if given is not None:
        return given
    return next((p for p in DATA_CANDIDATES if p.is_dir()), DATA_CANDIDATES[0])


def load_dataset(folder: Path) -> Dataset:
    schema = Schema.load(folder / "schema.json")
    if schema.target is None:
        sys.exit(f"{folder}/schema.json names no target column")
    train = read_frame(folder / "train.csv", schema)
    holdout = read_frame(folder / "holdout.csv", schema)
    codes = encode(schema, train, source=str(folder / "train.csv")).codes.astype(np.int64)
    return Dataset(folder.name, schema, train, holdout, codes)


def sample_dataset(rows: int, seed: int) -> Dataset:
    from cleanroom.sample_data import demo_dataset

    schema_dict, frame, _, _ = demo_dataset(rows, seed=seed)
    schema = Schema.from_dict(schema_dict)
    cut = int(0.8 * len(frame))
    train, holdout = frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)
    codes = encode(schema, train, source="sample").codes.astype(np.int64)
    return Dataset("sample", schema, train, holdout, codes)


# ------------------------------------------------------------------------------------------ reporting
@dataclass
class Row:
    dataset: str
    epsilon: float
    seed: int
    score: float
    tvd1: float
    tvd2: float
    wall: float
    peak: float
    rho_spent: float
    rho_budget: float
    utility_sd: float = float("nan")  # sd of the reported (noisy) utility figure
    tvd_sd: float = float("nan")  # sd of the reported (noisy) mean 2-way TVD
    attack_sd: float = float("nan")  # sd of the gate's (noisy) DCR membership-inference score


def summary_line(rows: list[Row], real: float) -> str:
    scores = [r.score for r in rows]
    first = rows[0]
    reference = REFERENCE.get(first.dataset, {}).get(first.epsilon)
    ref_score = reference[0] if reference else "-"
    ref_tvd = f"{reference[1]:.3f}" if reference and reference[1] is not None else "-"
    return (
        f"| {first.dataset} | {first.epsilon:g} | {statistics.median(scores):.3f} | {min(scores):.3f} | "
        f"{statistics.median(r.tvd1 for r in rows):.3f} | {statistics.median(r.tvd2 for r in rows):.3f} "
        f"({max(r.tvd2 for r in rows):.3f}) | {statistics.median(r.wall for r in rows):.1f} s "
        f"({max(r.wall for r in rows):.1f}) | {max(r.peak for r in rows):.0f} MiB | "
        f"{ref_score} / {ref_tvd} | {real:.3f} | "
        f"{statistics.median(r.utility_sd for r in rows):.3f} / "
        f"{statistics.median(r.tvd_sd for r in rows):.4f} / "
        f"{statistics.median(r.attack_sd for r in rows):.3f} |"
    )


TABLE_HEAD = (
    "| data | epsilon | TSTR median | TSTR worst | 1-way TVD | 2-way TVD (worst) | wall median (max) | "
    "peak | private-pgm MST TSTR / 2-way TVD | train on real | "
    "sd of reported utility / 2-way TVD / attack |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def parse_settings(text: str | None) -> dict[str, Any]:
    settings = json.loads(text) if text else {}
    for key, value in settings.items():
        if isinstance(value, list):
            settings[key] = tuple(value)
    return dict(settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", action="store_true", help="every dataset: " + ", ".join(SUITE))
    parser.add_argument("--datasets", nargs="+", help="dataset folder names under --data")
    parser.add_argument("--sample", action="store_true", help="the built-in sample data (no files)")
    parser.add_argument("--data", type=Path, default=None, help="folder of dataset folders")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--delta", type=float, default=1e-9)
    parser.add_argument("--synthesizer", default=DEFAULT_SYNTHESIZER)
    parser.add_argument("--settings", help="synthesizer_settings as JSON, e.g. '{\"compress_z\": 2}'")
    parser.add_argument("--evaluation-share", type=float, default=DEFAULT_EVALUATION_SHARE)
    parser.add_argument("--no-evaluation", action="store_true", help="no evaluation share, no holdout")
    parser.add_argument(
        "--membership-holdout", type=float, default=None,
        help="a fixed share of each party's rows kept out of the marginals for the membership evaluation "
        "(default: sized per party from its noisy row count, as the party node does)",
    )  # fmt: skip
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--dropout-tolerance", type=int, default=1, help="as `cleanroom simulate` plans")
    parser.add_argument(
        "--keep-spare-noise", action="store_true",
        help="survivors keep the noise drawn for tolerated dropouts (as before noise removal)",
    )  # fmt: skip
    parser.add_argument("--rows", type=int, default=20000, help="rows of --sample data")
    parser.add_argument("--json", type=Path, help="append every run as a JSON line to this file")
    args = parser.parse_args()
    names = list(SUITE) if args.suite else list(args.datasets or [])
    if not names and not args.sample:
        parser.error("give --suite, --datasets NAME... or --sample")
    root = data_root(args.data)
    share = 0.0 if args.no_evaluation else args.evaluation_share
    layout = NoiseLayout.for_plan(args.parties, args.dropout_tolerance, 0)
    n_min, shares = layout.n_min, 1 if args.keep_spare_noise else layout.shares
    settings = parse_settings(args.settings)
    print(
        f"synthesizer {args.synthesizer} {settings or ''}, evaluation share {share}, {args.parties} parties, "
        f"n_min {n_min}, noise draws per party {shares}, membership holdout "
        f"{'off' if args.no_evaluation else args.membership_holdout or 'sized'}, "
        f"delta {args.delta}",
        flush=True,
    )
    datasets = [sample_dataset(args.rows, 1)] if args.sample else []
    summary = []
    for name in names:
        if not (root / name / "train.csv").is_file():
            sys.exit(f"dataset {name!r} not found under {root} (pass --data)")
    for data in datasets + [load_dataset(root / n) for n in names]:
        real = tstr(train(data.train, data), data)
        print(f"== {data.name}: {len(data.train)} training rows, {len(data.schema.domain)} columns, "
              f"{data.task}, train on real {real:.3f}", flush=True)  # fmt: skip
        for epsilon in args.epsilons:
            rows = []
            for seed in args.seeds:
                job_rho = cdp_rho(epsilon, args.delta)
                job = SynthesisJob(
                    data.schema, data.codes, args.synthesizer, settings, job_rho * (1 - share),
                    args.parties, n_min, not args.no_evaluation, seed, args.membership_holdout,
                    job_rho, share or 0.1, shares,
                )  # fmt: skip
                result = in_fresh_process(job)
                frame = decode(data.schema, result.codes, np.random.default_rng(seed))
                model = train(frame.iloc[: release.synthetic_holdout_start(len(frame))], data)
                tvd1, tvd2 = mean_tvds(data.schema.domain, data.codes, result.codes)
                row = Row(data.name, epsilon, seed, tstr(model, data), tvd1, tvd2, result.wall,
                          result.peak_mib, result.rho_spent, job.rho)  # fmt: skip
                if share > 0:
                    row.utility_sd, row.tvd_sd = evaluation_noise(
                        model, result.codes, data, job_rho, share, job.layout
                    )
                    row.attack_sd = attack_score_stddev(job, result.codes, data, job_rho, share)
                assert row.rho_spent <= row.rho_budget * (1 + 1e-12), "a planner overspent its budget"
                rows.append(row)
                rounds = " ".join(f"{n}:{k}" for n, k in result.rounds)
                print(f"  eps {epsilon:g} seed {seed}: TSTR {row.score:.4f} TVD {tvd1:.4f}/{tvd2:.4f} "
                      f"wall {row.wall:.1f} s peak {row.peak:.0f} MiB rho {row.rho_spent:.5f}/"
                      f"{row.rho_budget:.5f} reported sd {row.utility_sd:.4f}/{row.tvd_sd:.4f}/"
                      f"{row.attack_sd:.4f} rounds {rounds}", flush=True)  # fmt: skip
                if args.json:
                    with args.json.open("a") as handle:
                        handle.write(json.dumps({**row.__dict__, "synthesizer": args.synthesizer,
                                                 "settings": settings, "share": share}) + "\n")  # fmt: skip
            summary.append(summary_line(rows, real))
    print("\n" + TABLE_HEAD)
    print("\n".join(summary))


if __name__ == "__main__":
    main()
