"""The party's side of a job's evaluation: staged model and synthetic data, evaluation rounds, local report.

- Membership split: a fraction of the party's records never enter the job's marginal rounds
  (`member_count_tables`); they are the non-members the DCR attack scores. Each record's side is a keyed
  hash (HMAC-SHA256 with a secret only the party knows) of that record alone against the job's fraction,
  so adding or removing a record never moves another (`release.party_membership_split`). The fraction is
  sized once per job from the party's own noisy row count (`release.holdout_sizing`, charged by the node
  in its ledger with the count, never sent; `set_holdout`), so it is fixed before any marginal is counted.
- Staging: the coordinator uploads the model and synthetic data (`StageEvaluation`); they are kept under the
  node's state directory, never in the output folder, and deleted when the job's report arrives. A later
  `DeliverResults` of the synthetic data or model must carry exactly the bytes that were evaluated.
- The model is `model.onnx`, never Python: when the upload completes, `check_staged` loads it with
  `cleanroom.evaluation.model_file.load_model` (operator allowlist, spec equal to the schema's, plan target
  and task) and runs it once on probe rows built from the schema alone; a refused model is deleted and the
  upload fails, before any evaluation round can be charged, whatever the party's records are.
- Evaluation rounds: one secure-aggregation round per statistic; checked against the plan (kind allowed,
  vector length, rho from the requested noise within the plan's allotment), charged like marginal rounds.
- Report: on delivery of the combined report.json, the party writes report.html and report.json merging the
  combined figures with its own exact detail and plots (which never leave the party).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cleanroom.accounting import DistributedGaussian, NoiseLayout, cdp_rho
from cleanroom.errors import InvalidInput, PermissionDenied, PreconditionFailed
from cleanroom.evaluation import release
from cleanroom.evaluation.model_file import MODEL_FILE_NAME, ModelFile, ModelRefused
from transport import wire

log = logging.getLogger("cleanroom.party")
STAGED_NAMES = ("synthetic.csv", "synthetic.parquet", MODEL_FILE_NAME)
MIN_SIGMA_PARTY2 = 4


def _sha256(path: Path, chunk_bytes: int = 1024 * 1024) -> str:
    """SHA-256 of a file read in chunks (staged files may be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_staged_model(path: Path, where: str, schema: Any, plan: Any) -> ModelFile:
    """The staged ONNX model, checked against the schema and the plan's target/task, run on probe rows."""
    from cleanroom.evaluation.model_file import CLASSIFICATION, load_model

    target, task = str(plan.target), str(plan.task)
    try:
        model = load_model(path, schema, target, task)
        if task == CLASSIFICATION and release.positive_class(schema, target) not in model.spec.classes:
            raise ModelRefused(f"model classes {list(model.spec.classes)} lack the positive class")
        model.probe()
    except ModelRefused as error:
        raise PermissionDenied(f"{where}: {MODEL_FILE_NAME} refused: {error}") from None
    return model


@dataclass
class PartyEvaluation:
    party_id: str
    plan: Any
    schema: Any
    source: Any
    staging_root: Path
    secret: bytes
    _codes: np.ndarray | None = None
    _fractions: dict[str, float] = field(default_factory=dict)  # job -> its membership holdout fraction
    _splits: dict[str, Any] = field(default_factory=dict)
    _synthetic: dict[str, np.ndarray] = field(default_factory=dict)
    _attacks: dict[str, Any] = field(default_factory=dict)
    _models: dict[str, ModelFile] = field(default_factory=dict)
    _digests: dict[str, dict[str, str]] = field(default_factory=dict)  # job -> staged file -> SHA-256

    # ---- the party's rows --------------------------------------------------------------------------

    def codes(self) -> np.ndarray:
        if self._codes is None:
            from cleanroom.encoding import encode

            name = getattr(self.source, "name", f"party {self.party_id} data")  # e.g. "csv file <path>"
            encoded = encode(self.schema, self.source.read_frame(), source=name)
            self._codes = np.asarray(encoded.codes, dtype=np.int64)
        return self._codes

    def noisy_rows(self, sigma2: Fraction) -> int:
        """The party's number of records plus discrete Gaussian noise of variance `sigma2` (one draw)."""
        from cleanroom.noise import sample_discrete_gaussian

        return len(self.codes()) + int(sample_discrete_gaussian(sigma2, 1)[0])

    def sized(self, job_id: str) -> bool:
        return job_id in self._fractions

    def set_holdout(self, job_id: str, noisy_rows: float) -> None:
        """Fix the job's holdout fraction from the noisy row count the node charged (or read back)."""
        n_parties = len(getattr(self.plan, "data_parties", ())) or 1
        self._fractions[job_id] = release.holdout_fraction(noisy_rows, n_parties)

    def split(self, job_id: str) -> Any:
        if job_id not in self._fractions:
            raise PreconditionFailed(f"party {self.party_id}: job {job_id!r} has no sized membership holdout")
        if job_id not in self._splits:
            split = release.party_membership_split(self.codes(), self.secret, self._fractions[job_id])
            self._splits = {job_id: split}  # one job at a time: earlier jobs' index arrays are dropped
        return self._splits[job_id]

    def member_count_tables(self, job_id: str, cliques: list[tuple[str, ...]]) -> list[np.ndarray]:
        """The job's marginal tables over its training members only."""
        from cleanroom.marginals import count_tables

        members = self.codes()[self.split(job_id).members]
        return [np.asarray(t, dtype=np.int64) for t in count_tables(members, self.schema.domain, cliques)]

    # ---- staging -------------------------------------------------------------------------------------

    def staged_dir(self, job_id: str) -> Path:
        return self.staging_root / hashlib.sha256(job_id.encode()).hexdigest()[:32]

    def discard_staged(self, keep: str | None = None) -> list[Path]:
        """Delete every staged folder except job `keep`'s (at start-up: all; at a new job's handshake: the
        earlier jobs'); returns the folders deleted. Only one job is evaluated at a time."""
        if not self.staging_root.is_dir():
            return []
        kept = self.staged_dir(keep) if keep is not None else None
        removed = []
        for entry in self.staging_root.iterdir():
            if entry != kept and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        for job_id in [j for j in (*self._synthetic, *self._attacks, *self._models) if j != keep]:
            self._synthetic.pop(job_id, None)
            self._attacks.pop(job_id, None)
            self._models.pop(job_id, None)
            self._digests.pop(job_id, None)
        if removed:
            log.info("deleted %d stale staged evaluation folders under %s", len(removed), self.staging_root)
        return removed

    def begin_staging(self, job_id: str, current_job: str | None, files: list[wire.ResultFile]) -> Any:
        from party.node import ResultWriter

        if current_job is None or job_id != current_job:
            raise PreconditionFailed(f"party {self.party_id}: staged files for unknown job {job_id!r}")
        names = [f.name for f in files]
        missing_model = MODEL_FILE_NAME not in names and bool(self.plan.target)
        if missing_model or not set(names) <= set(STAGED_NAMES):
            raise InvalidInput(f"party {self.party_id}: cannot stage {names} (expected {STAGED_NAMES})")
        directory = self.staged_dir(job_id)
        shutil.rmtree(directory, ignore_errors=True)
        self._digests.pop(job_id, None)
        return ResultWriter(directory, {f.name: f for f in files})

    def check_staged(self, job_id: str, digests: dict[str, str] | None = None) -> None:
        """After the upload: the staged model loads and runs on probe rows, or all staged files go.

        `digests`: the SHA-256 of every staged file as it was written; `check_delivery` compares a release
        with them instead of reading the staged files again.
        """
        self._digests[job_id] = dict(digests or {})
        if not (self.staged_dir(job_id) / MODEL_FILE_NAME).is_file():
            return
        self._models.pop(job_id, None)
        try:
            self.model(job_id)
        except PermissionDenied:
            shutil.rmtree(self.staged_dir(job_id), ignore_errors=True)
            raise

    def staged_file(self, job_id: str, names: tuple[str, ...]) -> Path:
        for name in names:
            path = self.staged_dir(job_id) / name
            if path.is_file():
                return path
        raise PreconditionFailed(f"party {self.party_id}: job {job_id}: nothing staged for evaluation")

    def synthetic_codes(self, job_id: str) -> np.ndarray:
        if job_id not in self._synthetic:
            from cleanroom.encoding import encode
            from cleanroom.frames import read_frame

            path = self.staged_file(job_id, ("synthetic.parquet", "synthetic.csv"))
            frame = read_frame(path, self.schema)  # category text exactly as written ("TRUE", "007")
            codes = encode(self.schema, frame, source="staged synthetic data").codes
            self._synthetic[job_id] = np.asarray(codes, dtype=np.int64)
        return self._synthetic[job_id]

    # ---- evaluation rounds -----------------------------------------------------------------------------

    def check_round(self, request: wire.RoundRequest, layout: NoiseLayout, where: str) -> float:
        """Validate an evaluation round against the plan; returns the rho it costs (nothing charged here)."""
        statistic, task, domain = request.statistic, str(self.plan.task), self.schema.domain
        if statistic not in release.STATISTICS:
            raise PermissionDenied(f"{where}: statistic {statistic!r} is not one the plan allows")
        self.synthetic_codes(request.job_id)  # staged data that load and encode, before anything is charged
        if statistic == release.UTILITY:
            self.model(request.job_id)
        length = release.statistic_length(statistic, domain, task)
        if request.length != length:
            raise InvalidInput(f"{where}: {statistic} has {length} cells, the request says {request.length}")
        if request.sigma_party2 < MIN_SIGMA_PARTY2:
            raise InvalidInput(f"{where}: per-party noise variance {request.sigma_party2} is below 4")
        rho = self.round_rho(statistic, request.sigma_party2, layout)
        job_rho = cdp_rho(float(self.plan.max_epsilon_per_job), float(self.plan.delta))
        allotted = release.statistic_rho(job_rho, float(self.plan.evaluation_share), statistic)
        if rho > allotted * (1 + 1e-9):
            raise PermissionDenied(
                f"{where}: noise for {statistic} is below the plan's calibration (rho {rho:.6g} over the "
                f"allotted {allotted:.6g})"
            )
        return rho

    def round_rho(self, statistic: str, sigma_party2: Any, layout: NoiseLayout) -> float:
        task, domain = str(self.plan.task), self.schema.domain
        length = release.statistic_length(statistic, domain, task)
        sensitivity = release.statistic_sensitivity_l2(statistic, domain, task)
        noise = DistributedGaussian.of(sigma_party2 * layout.n_min, layout)
        l1 = sensitivity * math.sqrt(length)
        return float(noise.rho(sensitivity_l1=l1, sensitivity_l2=sensitivity, dim=length))

    def vector(self, job_id: str, statistic: str) -> np.ndarray:
        """This party's exact (noise-free) statistic vector; the node adds its noise share."""
        if statistic == release.UTILITY:
            return self.utility_vector(job_id)
        synthetic = self.synthetic_codes(job_id)
        domain = self.schema.domain
        if statistic == release.FIDELITY:
            from cleanroom.evaluation.fidelity import tvd_statistics

            return tvd_statistics(self.codes(), synthetic, domain, release.fidelity_cliques(domain))
        outcome = next(o for o in self.attacks(job_id) if o.attack == release.attack_name(statistic))
        return np.asarray(outcome.statistics, dtype=np.int64)

    def utility_vector(self, job_id: str) -> np.ndarray:
        from cleanroom.evaluation import utility

        model = self.model(job_id)
        target, task = str(self.plan.target), str(self.plan.task)
        frame = self.source.read_frame().reset_index(drop=True)
        _, y = release.model_inputs(frame, target, task, self.schema.column_kinds())
        x = frame.loc[y.index]  # rows with a known target, as read: the model encodes them by the schema
        if task == "classification":
            positive = release.positive_class(self.schema, target)
            scores = utility.positive_scores(model, x, positive) if len(x) else np.zeros(0)
            return utility.classification_statistics((y == positive).to_numpy(), scores)
        bounds = release.target_bounds(self.schema, target)
        predictions = utility.finite_predictions(model.predict(x), bounds) if len(x) else np.zeros(0)
        return utility.regression_statistics(y.to_numpy(), predictions, bounds)

    def model(self, job_id: str) -> ModelFile:
        if job_id not in self._models:
            path = self.staged_file(job_id, (MODEL_FILE_NAME,))
            self._models[job_id] = load_staged_model(path, f"party {self.party_id}", self.schema, self.plan)
        return self._models[job_id]

    def attacks(self, job_id: str) -> Any:
        """The DCR attack on all members and non-members (per record: its side and the synthetic data)."""
        if job_id not in self._attacks:
            from cleanroom.evaluation.membership import run_dcr_attack

            split, codes = self.split(job_id), self.codes()
            outcome = run_dcr_attack(
                codes[split.members], codes[split.nonmembers], self.synthetic_codes(job_id),
                self.schema.domain.shape,
            )  # fmt: skip
            self._attacks[job_id] = (outcome,)
        return self._attacks[job_id]

    # ---- delivery ------------------------------------------------------------------------------------

    def staged_copy(self, job_id: str, meta: wire.ResultFile) -> Path | None:
        """The staged file `meta` names, if it is the one released (same digest as recorded at staging)."""
        staged = self.staged_dir(job_id) / meta.name
        digest = self._digests.get(job_id, {}).get(meta.name)
        if meta.name in STAGED_NAMES and digest == meta.sha256 and staged.is_file():
            return staged
        return None

    def check_delivery(self, job_id: str, files: list[wire.ResultFile]) -> None:
        """The synthetic data or model released must be exactly what this party evaluated."""
        for meta in files:
            if meta.name not in STAGED_NAMES:
                continue
            staged = self.staged_dir(job_id) / meta.name
            digest = self._digests.get(job_id, {}).get(meta.name)
            if digest is None and staged.is_file():
                digest = _sha256(staged)  # staged without a recorded digest (tests, older callers)
            if not staged.is_file() or digest != meta.sha256:
                raise PermissionDenied(
                    f"party {self.party_id}: {meta.name} differs from the copy staged for evaluation"
                )

    def finish_delivery(self, job_id: str, written: list[str], output_dir: Path) -> None:
        """Write report.html/report.json (combined figures + local detail); drop the staged copy."""
        try:
            combined_path = output_dir / "report.json"
            if "report.json" in written and combined_path.is_file():
                combined = json.loads(combined_path.read_text())
                evaluation = combined.get("evaluation")
                if evaluation is not None:
                    released = bool(evaluation["gate"]["released"])
                    if not released:
                        for name in written:
                            if name in STAGED_NAMES:
                                (output_dir / name).unlink(missing_ok=True)
                    self.write_report(job_id, combined, released, output_dir)
        finally:
            shutil.rmtree(self.staged_dir(job_id), ignore_errors=True)
            self._synthetic.pop(job_id, None)
            self._attacks.pop(job_id, None)
            self._models.pop(job_id, None)
            self._digests.pop(job_id, None)

    def write_report(self, job_id: str, combined: dict[str, Any], released: bool, output_dir: Path) -> None:
        from cleanroom.evaluation.report import report_json, write_report

        report = party_report(self, job_id, combined, released)
        write_report(report, output_dir)
        merged = {**combined, **report_json(report)}  # the coordinator's job report + this party's sections
        (output_dir / "report.json").write_text(json.dumps(merged, indent=2, allow_nan=False))
        log.info("job %s: report written to %s (released: %s)", job_id, output_dir, released)


def party_report(evaluation: PartyEvaluation, job_id: str, combined: dict[str, Any], released: bool) -> Any:
    """The combined figures from the coordinator's report plus, if released, this party's own detail."""
    from cleanroom.evaluation import report as rep
    from cleanroom.evaluation.fidelity import FidelityReport, local_fidelity
    from cleanroom.evaluation.membership import GateDecision

    figures = combined["evaluation"]
    gate = figures["gate"]
    decision = GateDecision(
        bool(gate["released"]),
        str(gate["reason"]),
        {k: (math.nan if v is None else float(v)) for k, v in gate["scores"].items()},
        float(gate["max_membership_inference_score"]),
    )
    stages = tuple(rep.PrivacyStage(**s) for s in figures["privacy_stages"])
    total = rep.PrivacyStage(**figures["privacy_total"])
    utility = figures.get("utility")
    summary = None
    if utility is not None:
        summary = rep.UtilitySummary(
            utility["task"], utility["real_combined"], utility["synthetic_holdout"], utility["model"]
        )
    domain = evaluation.schema.domain
    fidelity = figures.get("fidelity")
    combined_fidelity = None
    if fidelity is not None:
        empty = np.full((len(domain), len(domain)), np.nan)
        pairs = {tuple(k.split("|", 1)): _num(v) for k, v in fidelity["two_way_tvd"].items()}
        one_way = {k: _num(v) for k, v in fidelity["one_way_tvd"].items()}
        combined_fidelity = FidelityReport(domain.attrs, one_way, pairs, empty, empty.copy())
    local = None
    if released:
        real, synthetic = evaluation.codes(), evaluation.synthetic_codes(job_id)
        local = rep.LocalData(
            domain,
            real,
            synthetic,
            local_fidelity(real, synthetic, domain, release.fidelity_cliques(domain)),
            tuple(evaluation.attacks(job_id)),
            rep.schema_level_names(evaluation.schema),
        )
    return rep.PartyReport(
        evaluation.party_id,
        str(combined.get("collaboration_id", "")),
        job_id,
        stages,
        decision,
        summary,
        combined_fidelity,
        local,
        total,
    )


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)
