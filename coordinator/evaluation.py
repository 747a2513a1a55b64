"""The coordinator's side of a job's evaluation (issue 6): stage, one secure-aggregation round per
statistic, combine, gate, and rewrite report.json with the combined figures.

Every party receives the model and synthetic data as a *staged* upload (evaluation only). Each statistic
(utility, fidelity, every attack) is one more secure-aggregation round: the request names the statistic
instead of cliques, its noise is calibrated to the statistic's sensitivity in the vector's own fixed-point
units and to its share of the job's budget (`cleanroom.evaluation.release`). The coordinator sees only the
noisy sums. `membership.gate` then decides: blocked -> only report.json is delivered, and the parties drop
their staged copies.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.accounting import cdp_eps
from cleanroom.evaluation import release
from cleanroom.evaluation.model_file import MODEL_FILE_NAME
from cleanroom.evaluation.report import json_ready
from transport import wire

AUC_NOISE_DRAWS = 200
HOLDOUT_STAGE = "membership holdout sizing (each party's own noisy row count, never sent)"


def statistics_for(plan: Any) -> tuple[str, ...]:
    return release.STATISTICS if getattr(plan, "target", None) else release.STATISTICS[1:]


async def evaluate(workflow: Any, results: dict[str, Path]) -> dict[str, Path]:
    """Run the job's evaluation; returns the files to deliver (only report.json when the gate blocks)."""
    from coordinator.workflow import progress

    evaluation = CoordinatorEvaluation(workflow)
    await workflow.timed("eval_stage", evaluation.stage(results))
    summed: dict[str, tuple[np.ndarray, float]] = {}
    for index, statistic in enumerate(statistics_for(workflow.plan)):
        name = "eval_" + statistic.replace("attack:", "attack_")
        summed[statistic] = await workflow.timed(name, evaluation.round(statistic, index))
    figures = await workflow.timed("eval_combine", _to_thread(evaluation.combine, summed, results))
    decision = figures["gate"]
    progress(f"release gate: {decision['reason']}")
    evaluation.rewrite_report(results["report.json"], figures)
    if not decision["released"]:
        return {"report.json": results["report.json"]}
    return results


async def _to_thread(function: Any, *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(function, *args)


class CoordinatorEvaluation:
    def __init__(self, workflow: Any) -> None:
        self.workflow = workflow
        self.plan = workflow.plan
        self.schema = workflow.config.schema
        self.job_rho = float(workflow.job_rho())
        self.first_round = workflow.first_round + len(workflow.record.rounds)
        self.stages: list[dict[str, Any]] = []

    async def stage(self, results: dict[str, Path]) -> None:
        from coordinator.workflow import progress

        files = {
            n: p for n, p in results.items() if n in ("synthetic.csv", "synthetic.parquet", MODEL_FILE_NAME)
        }
        if "synthetic.parquet" in files:
            files.pop("synthetic.csv", None)
        wf = self.workflow
        wf.last_errors = {}
        from coordinator.client import file_metas

        metas = await _to_thread(file_metas, files)  # hashed once for every party
        calls = {pid: c.stage_for_evaluation(wf.record.job_id, files, metas) for pid, c in wf.clients.items()}
        staged = await wf.gather(
            calls, "stage evaluation", len(wf.clients) - int(self.plan.dropout_tolerance)
        )
        size = sum(p.stat().st_size for p in files.values())
        progress(f"staged {', '.join(files)} ({size:,} B, not released) at {len(staged)} parties")
        wf.staged = {pid: {name: metas[name].sha256 for name in files} for pid in staged}

    async def round(self, statistic: str, index: int) -> tuple[np.ndarray, float]:
        """One secure-aggregation round of `statistic`; returns the noisy sum and its per-cell noise sd."""
        from cleanroom.accounting import DistributedGaussian
        from coordinator.workflow import progress

        wf, domain, task = self.workflow, self.schema.domain, str(self.plan.task)
        length = release.statistic_length(statistic, domain, task)
        sensitivity = release.statistic_sensitivity_l2(statistic, domain, task)
        target = release.statistic_rho(self.job_rho, float(self.plan.evaluation_share), statistic)
        layout = self.plan.noise_layout
        sigma_total2 = layout.calibrate(target, sensitivity, dim=length)
        sigma_party2 = Fraction(sigma_total2) / layout.n_min
        number = self.first_round + index
        request = wire.RoundRequest(
            wf.record.job_id, f"{wf.record.job_id}/{number}", number, (), sigma_party2, statistic, length
        )
        total, survivors, variance = await wf.secure_sum(request, length)
        noise = DistributedGaussian.of(sigma_total2, layout)
        rho = float(noise.rho(sensitivity * math.sqrt(length), sensitivity, length))
        wf.record.rho_spent += rho
        self.stages.append({"name": f"evaluation: {statistic}", "rho": rho, "round": number})
        stddev = math.sqrt(variance)
        progress(
            f"evaluation round {number} ({statistic}): {length} cells, {len(survivors)} parties, "
            f"noise sd {stddev:.4g} (fixed-point units), rho {rho:.4g}"
        )
        return total.astype(np.int64), stddev

    def combine(
        self, summed: dict[str, tuple[np.ndarray, float]], results: dict[str, Path]
    ) -> dict[str, Any]:
        from cleanroom.evaluation.fidelity import combined_tvd
        from cleanroom.evaluation.membership import combined_dcr_score, dcr_score_stddev, gate
        from coordinator.workflow import progress

        figures: dict[str, Any] = {}
        if release.UTILITY in summed:
            figures["utility"] = self.utility(*summed[release.UTILITY], results)
        domain = self.schema.domain
        fidelity = combined_tvd(summed[release.FIDELITY][0], domain, release.fidelity_cliques(domain))
        figures["fidelity"] = {k: fidelity.to_dict()[k] for k in ("summary", "one_way_tvd", "two_way_tvd")}
        summary = fidelity.summary()
        progress(
            f"fidelity (combined): mean 1-way TVD {summary['mean_one_way_tvd']:.4f}, "
            f"mean 2-way TVD {summary['mean_two_way_tvd']:.4f}"
        )
        scores, membership = {}, {}
        vector, stddev = summed[release.ATTACK_DCR]
        name = release.attack_name(release.ATTACK_DCR)
        scores[name] = combined_dcr_score(vector)
        sd = dcr_score_stddev(vector, stddev)
        membership[name] = {"score": scores[name], "noise_sd": sd}
        progress(f"membership inference {name}: {scores[name]:.4f} (noise sd {sd:.4f})")
        figures["membership"] = membership
        figures["gate"] = gate(scores, float(self.plan.max_membership_inference_score)).to_dict()
        figures.update(self.privacy())
        return json_ready(figures)  # type: ignore[no-any-return]

    def utility(self, vector: np.ndarray, stddev: float, results: dict[str, Path]) -> dict[str, Any]:
        from cleanroom.evaluation import utility as ut
        from coordinator.workflow import progress

        task, target = str(self.plan.task), str(self.plan.target)
        holdout = self.synthetic_holdout(results)
        if task == "classification":
            real = ut.classification_metrics_from_vector(vector).to_dict()
            real["auc_noise_sd"] = auc_noise_sd(vector, stddev)
            progress(
                f"utility (combined real rows): AUC {real['auc']:.4f} (noise sd {real['auc_noise_sd']:.4f}, "
                f"binning bound {real['auc_binning_bound']:.4f}), accuracy {real['accuracy']:.4f}, "
                f"F1 {real['f1']:.4f}; synthetic holdout AUC {holdout.get('auc', math.nan):.4f}"
            )
        else:
            bounds = release.target_bounds(self.schema, target)
            real = ut.regression_metrics_from_vector(vector, bounds).to_dict()
            progress(f"utility (combined real rows): {real}; synthetic holdout {holdout}")
        return {
            "task": task,
            "model": "HistGradientBoosting trained on 80 % of the synthetic rows",
            "real_combined": real,
            "synthetic_holdout": holdout,
        }

    def synthetic_holdout(self, results: dict[str, Path]) -> dict[str, float]:
        """The same model on the synthetic rows it was not trained on (no noise: nothing real involved)."""
        from cleanroom.evaluation import utility as ut
        from cleanroom.evaluation.model_file import load_model
        from cleanroom.frames import read_frame

        task, target = str(self.plan.task), str(self.plan.target)
        path = results.get("synthetic.parquet") or results["synthetic.csv"]
        frame: pd.DataFrame = read_frame(path, self.schema)  # category text as written ("TRUE", "007")
        rows = frame.iloc[release.synthetic_holdout_start(len(frame)) :]
        model = load_model(results[MODEL_FILE_NAME], self.schema, target, task)  # the checked ONNX loader
        _, y = release.model_inputs(rows, target, task, self.schema.column_kinds())
        x = rows.loc[y.index]  # rows with a known target, as read (the model encodes them itself)
        if len(x) == 0:
            return {}
        if task == "classification":
            positive = release.positive_class(self.schema, target)
            scores = ut.positive_scores(model, x, positive)
            return ut.classification_metrics((y == positive).to_numpy(), scores).to_dict()
        bounds = release.target_bounds(self.schema, target)
        predictions = ut.finite_predictions(model.predict(x), bounds)
        return ut.regression_metrics(y.to_numpy(), predictions, bounds).to_dict()

    def privacy(self) -> dict[str, Any]:
        delta = float(self.plan.delta)
        record = self.workflow.record
        sizing = [{"name": HOLDOUT_STAGE, "rho": record.holdout_rho}] if record.holdout_rho > 0 else []
        stages = (
            [
                {"name": f"synthesis round {r['round']} ({r.get('name', '')})", "rho": float(r["rho"])}
                for r in record.rounds
            ]
            + sizing
            + [{"name": s["name"], "rho": s["rho"]} for s in self.stages]
        )
        for stage in stages:
            stage["epsilon"] = cdp_eps(stage["rho"], delta) if stage["rho"] > 0 else 0.0
            stage["delta"] = delta
        total = sum(s["rho"] for s in stages)
        return {
            "privacy_stages": stages,
            "privacy_total": {
                "name": "zCDP composition (synthesis + evaluation)",
                "rho": total,
                "epsilon": cdp_eps(total, delta) if total > 0 else 0.0,
                "delta": delta,
            },
            "budget": {
                "job_rho": self.job_rho,
                "evaluation_share": float(self.plan.evaluation_share),
                "fractions": {**release.BUDGET_FRACTIONS, "holdout sizing": release.HOLDOUT_SIZING_FRACTION},
            },
        }

    def rewrite_report(self, path: Path, figures: dict[str, Any]) -> None:
        report = json.loads(path.read_text())
        report["evaluation"] = figures
        total = figures["privacy_total"]
        report["privacy"].update({"rho": total["rho"], "epsilon": total["epsilon"]})
        report["released"] = figures["gate"]["released"]
        path.write_text(json.dumps(report, indent=2, allow_nan=False))


def auc_noise_sd(vector: np.ndarray, stddev: float, draws: int = AUC_NOISE_DRAWS) -> float:
    """Standard deviation of the combined AUC under the round's noise (parametric bootstrap, fixed seed)."""
    from cleanroom.evaluation.utility import classification_metrics_from_vector

    rng = np.random.default_rng(0)
    base = np.asarray(vector, dtype=np.float64)
    aucs = [
        classification_metrics_from_vector(base + rng.normal(0.0, stddev, base.size)).auc
        for _ in range(draws)
    ]
    finite = [a for a in aucs if math.isfinite(a)]
    return float(np.std(finite)) if len(finite) > 1 else math.nan
