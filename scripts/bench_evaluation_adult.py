"""Evaluation figures on UCI Adult split across 3 parties at epsilon = 1 (delta = 1e-9), in one process.

Simulates what the party nodes and the coordinator will do over gRPC: every party computes the additive
evaluation vectors on its own rows and adds its share of distributed discrete Gaussian noise; the vectors are
summed (secure aggregation's result, without the masking) and turned into the combined figures; party 0's
report is written as HTML + JSON.

The synthetic data come from the project's MST (`cleanroom.synth.mst.MSTPlanner`), its three rounds
measured the federated way (each party's count tables plus its noise share, summed).

Usage: PYTHONPATH=. python scripts/bench_evaluation_adult.py [--data DIR] [--out DIR] [--max-score 0.6]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from cleanroom.accounting import DistributedGaussian, calibrate, cdp_eps, cdp_rho
from cleanroom.domain import Domain
from cleanroom.encoding import encode
from cleanroom.evaluation.fidelity import (
    combined_fidelity,
    combined_tvd,
    default_fidelity_cliques,
    fidelity_sensitivity_l2,
    fidelity_statistics,
    local_fidelity,
    tvd_sensitivity_l2,
    tvd_statistics,
)
from cleanroom.evaluation.membership import (
    DCR_SENSITIVITY_L2,
    combined_dcr_score,
    dcr_score_stddev,
    gate,
    membership_split,
    run_dcr_attack,
)
from cleanroom.evaluation.release import BUDGET_FRACTIONS, MEMBERSHIP_HOLDOUT
from cleanroom.evaluation.report import (
    LocalData,
    PartyReport,
    PrivacyStage,
    UtilitySummary,
    schema_level_names,
    write_report,
)
from cleanroom.evaluation.utility import (
    CLASSIFICATION_SENSITIVITY_L2,
    classification_metrics,
    classification_metrics_from_vector,
    classification_statistics,
    positive_scores,
)
from cleanroom.marginals import count_table
from cleanroom.measurement import Measurement
from cleanroom.noise import party_noise_share
from cleanroom.schema import Schema
from cleanroom.synth.mst import MSTPlanner

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "adult"
N_PARTIES, EPSILON, DELTA = 3, 1.0, 1e-9
SIGMAS: list[float] = []  # noise sd of the sum, per `noisy_sum` call
EVALUATION_SHARE = 0.25
SHARES = {
    "MST synthesizer": 1 - EVALUATION_SHARE,
    "utility statistics": EVALUATION_SHARE * BUDGET_FRACTIONS["utility"],
    "fidelity statistics": EVALUATION_SHARE * BUDGET_FRACTIONS["fidelity"],
    "attack dcr": EVALUATION_SHARE * BUDGET_FRACTIONS["attack:dcr"],
}


def noisy_sum(vectors: list[np.ndarray], sensitivity_l2: float, rho: float) -> tuple[np.ndarray, float]:
    """The parties' vectors, each plus its distributed discrete Gaussian share, summed; and the rho."""
    dim = int(vectors[0].size)
    sigma_total2 = calibrate(rho, sensitivity_l2, N_PARTIES, n_parties=N_PARTIES, dim=dim)
    noise = DistributedGaussian(sigma_total2, N_PARTIES, N_PARTIES)
    total = sum(v + party_noise_share(dim, noise.sigma_party2) for v in vectors)
    SIGMAS.append(math.sqrt(float(sigma_total2)))
    return np.asarray(total), noise.rho(sensitivity_l2 * math.sqrt(dim), sensitivity_l2, dim)


def federated_mst(
    parties: list[np.ndarray], domain: Domain, rho: float, n_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """MST's rounds as the coordinator runs them: every party counts and adds its noise share; sum; plan."""
    planner = MSTPlanner(domain, rho, n_min=N_PARTIES, n_parties=N_PARTIES)
    measurements: list[Measurement] = []
    spent = 0.0
    spec = planner.first_round()
    while spec is not None:
        sigma_party2 = spec.sigma_total2 / N_PARTIES
        for clique in spec.cliques:
            tables = [count_table(p, domain, clique) for p in parties]
            summed = sum(t + party_noise_share(t.size, sigma_party2).reshape(t.shape) for t in tables)
            measurements.append(Measurement(clique, np.asarray(summed, dtype=np.float64), spec.stddev))
        spent += spec.rho
        spec = planner.next_round(measurements)
    return planner.estimate(measurements).sample(n_rows, rng).astype(np.int64), spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cleanroom_eval_adult"))
    parser.add_argument("--data", type=Path, default=DATA, help="holds train.csv, holdout.csv, schema.json")
    parser.add_argument("--max-score", type=float, default=0.6)
    parser.add_argument("--synthetic-rows", type=int, default=30000)
    args = parser.parse_args()
    data = args.data
    if not (data / "train.csv").exists():
        raise SystemExit(f"{data} not found (pass --data)")
    started = time.perf_counter()
    rng = np.random.default_rng(2026)
    schema = Schema.load(data / "schema.json")
    domain, target = schema.domain, str(schema.target)
    real = encode(schema, pd.read_csv(data / "train.csv"), source="train.csv").codes.astype(np.int64)
    holdout = encode(schema, pd.read_csv(data / "holdout.csv"), source="holdout.csv").codes.astype(np.int64)
    parties = [real[idx] for idx in np.array_split(rng.permutation(len(real)), N_PARTIES)]
    splits = [membership_split(p, f"party-{i}".encode(), MEMBERSHIP_HOLDOUT) for i, p in enumerate(parties)]
    rho_total = cdp_rho(EPSILON, DELTA)
    rho = {name: share * rho_total for name, share in SHARES.items()}
    spent: dict[str, float] = {}

    synthetic, spent["MST synthesizer"] = federated_mst(
        [p[s.members] for p, s in zip(parties, splits, strict=True)],
        domain,
        rho["MST synthesizer"],
        args.synthetic_rows,
        rng,
    )

    # Utility: train on 80% of the synthetic rows, score the other 20% and every party's real rows.
    t = domain.index(target)
    features = [j for j in range(len(domain)) if j != t]
    cut = int(0.8 * len(synthetic))
    model = HistGradientBoostingClassifier(categorical_features=list(range(len(features))), random_state=0)
    model.fit(synthetic[:cut, features], synthetic[:cut, t])
    positive = 1  # ">50K"
    syn_scores = positive_scores(model, synthetic[cut:, features], positive)
    synthetic_metrics = classification_metrics(synthetic[cut:, t] == positive, syn_scores)
    party_vectors = [
        classification_statistics(p[:, t] == positive, positive_scores(model, p[:, features], positive))
        for p in parties
    ]
    summed, spent["utility statistics"] = noisy_sum(
        party_vectors, CLASSIFICATION_SENSITIVITY_L2, rho["utility statistics"]
    )
    combined_utility = classification_metrics_from_vector(summed)
    pooled_auc = roc_auc_score(real[:, t] == positive, positive_scores(model, real[:, features], positive))
    holdout_auc = roc_auc_score(
        holdout[:, t] == positive, positive_scores(model, holdout[:, features], positive)
    )

    # Fidelity: each party's row-weighted TVDs against the synthetic data, noised and summed.
    cliques = default_fidelity_cliques(domain)
    summed_tvd, spent["fidelity statistics"] = noisy_sum(
        [tvd_statistics(p, synthetic, domain, cliques) for p in parties],
        tvd_sensitivity_l2(cliques),
        rho["fidelity statistics"],
    )
    fidelity = combined_tvd(summed_tvd, domain, cliques)
    exact_fidelity = local_fidelity(real, synthetic, domain, cliques)
    # The count-table form at the same budget, for comparison only (not charged: not part of the report).
    summed_tables, _ = noisy_sum(
        [fidelity_statistics(p, domain, cliques) for p in parties],
        fidelity_sensitivity_l2(cliques),
        rho["fidelity statistics"],
    )
    table_fidelity = combined_fidelity(summed_tables, synthetic, domain, cliques)

    # Membership inference at each party: DCR distance histograms, noised and summed.
    dcr_started = time.perf_counter()
    outcomes = [
        (run_dcr_attack(p[s.members], p[s.nonmembers], synthetic, domain.shape),)
        for p, s in zip(parties, splits, strict=True)
    ]
    dcr_seconds = time.perf_counter() - dcr_started
    summed_attack, spent["attack dcr"] = noisy_sum(
        [o[0].statistics for o in outcomes], DCR_SENSITIVITY_L2, rho["attack dcr"]
    )
    scores = {"dcr": combined_dcr_score(summed_attack)}
    stddevs = {"dcr": dcr_score_stddev(summed_attack, SIGMAS[-1])}
    exact_histogram = np.sum([o[0].statistics for o in outcomes], axis=0)
    decision = gate(scores, args.max_score)

    stages = tuple(PrivacyStage(name, r, cdp_eps(r, DELTA), DELTA) for name, r in spent.items())
    total_rho = sum(spent.values())
    report = PartyReport(
        party_id="party-0",
        collaboration_id="adult-3-parties",
        job_id="eval-demo",
        privacy=stages,
        privacy_total=PrivacyStage("zCDP composition", total_rho, cdp_eps(total_rho, DELTA), DELTA),
        gate=decision,
        utility=UtilitySummary(
            "classification",
            combined_utility.to_dict(),
            synthetic_metrics.to_dict(),
            "HistGradientBoosting trained on MST synthetic data",
        ),
        fidelity=fidelity,
        local=LocalData(
            domain,
            parties[0],
            synthetic,
            local_fidelity(parties[0], synthetic, domain, cliques),
            outcomes[0],
            schema_level_names(schema),
        ),
    )
    html_path, json_path = write_report(report, args.out)

    print(f"rho total {total_rho:.5f} (budget {rho_total:.5f}) -> epsilon {cdp_eps(total_rho, DELTA):.3f}")
    for stage in stages:
        print(f"  {stage.name:26s} rho {stage.rho:.5f} eps {stage.epsilon:.3f}")
    print(
        f"TSTR AUC: combined noisy {combined_utility.auc:.4f} "
        f"(binning bound {combined_utility.auc_binning_bound:.4f})"
        f" | pooled real direct {pooled_auc:.4f} | holdout.csv {holdout_auc:.4f} | synthetic holdout "
        f"{synthetic_metrics.auc:.4f}"
    )
    print(f"accuracy combined {combined_utility.accuracy:.4f}, F1 {combined_utility.f1:.4f}")
    tables = table_fidelity.summary()
    for key, value in fidelity.summary().items():
        print(
            f"fidelity {key:28s} per-party TVD form {value:.4f} | count-table form {tables[key]:.4f} | "
            f"exact pooled {exact_fidelity.summary()[key]:.4f}"
        )
    local = ", ".join(f"{o[0].local_score:.3f}" for o in outcomes)
    print(
        f"attack dcr combined {scores['dcr']:.4f} (noise sd {stddevs['dcr']:.4f}) | per party exact {local}"
        f" | {dcr_seconds:.2f} s for {sum(len(p) for p in parties):,} records x {len(synthetic):,} synthetic"
    )
    width = exact_histogram.size // 2
    print(f"  members per capped distance 0..{width - 1}: {exact_histogram[:width].tolist()}")
    print(f"  non-members per capped distance 0..{width - 1}: {exact_histogram[width:].tolist()}")
    print(f"gate at {args.max_score}: {decision.reason}")
    print(f"report: {html_path} ({html_path.stat().st_size // 1024} KiB), {json_path}")
    print(f"wall {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
