"""The coordinator's job: handshake -> measurement rounds (one secure-aggregation session each) -> fit ->
sample -> train -> deliver. It sees only noisy sums of all parties' tables, never one party's table.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cleanroom.accounting import cdp_rho
from cleanroom.errors import BudgetExceeded, CleanroomError, PreconditionFailed, ProtocolAbort
from cleanroom.identity import PlanApprovals
from cleanroom.joblog import JobLog
from cleanroom.marginals import split_vector
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.secagg.manifest import session_id
from cleanroom.secagg.server import SecAggServer
from cleanroom.synth import Planner, make_planner
from coordinator.client import PartyClient, file_metas
from coordinator.config import CoordinatorConfig
from transport import wire

log = logging.getLogger("cleanroom.coordinator")
T = TypeVar("T")
SOFTWARE_VERSION = "cleanroom/0.1 transport.v1"
# What the job needs only after the rounds (pandas, scikit-learn, ONNX): imported by a background thread
# while the handshake and the rounds wait on the parties, so the coordinator starts talking at once.
LATER_MODULES = ("coordinator.results", "coordinator.evaluation", "onnxruntime")


def prefetch(modules: tuple[str, ...] = LATER_MODULES) -> threading.Thread:
    """Start importing `modules` in a daemon thread; join it before using them (a failure to import is left
    for the real import to report)."""

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - the import where the module is used reports it
                continue

    thread = threading.Thread(target=run, name="prefetch-imports", daemon=True)
    thread.start()
    return thread


@dataclass
class JobRecord:
    job_id: str
    timings: dict[str, float] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    rho_spent: float = 0.0
    holdout_rho: float = 0.0  # each party's local membership-holdout sizing (release.holdout_sizing)
    delivered: dict[str, list[str]] = field(default_factory=dict)
    undelivered: dict[str, str] = field(default_factory=dict)


def progress(message: str) -> None:
    print(f"[coordinator] {message}", flush=True)


class Workflow:
    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        self.plan = config.plan
        self.members = {m.id: m for m in self.plan.data_parties}
        self.clients = {
            pid: PartyClient(pid, m.address, config.tls, config.call_deadline_s)
            for pid, m in self.members.items()
        }
        self.record = JobRecord(uuid.uuid4().hex)
        self.rng = np.random.default_rng(config.seed)
        self.last_errors: dict[str, CleanroomError] = {}
        self.planner: Planner | None = None  # set by measure()
        self.manifest = self.plan.secagg_manifest(config.schema.hash())
        self.job: Any = None  # a JobRun, opened by run()
        self.first_round = 0  # round numbers (and so session ids) continue across jobs under one plan
        self.absent: dict[str, str] = {}  # parties that missed a round of this job: they get no results
        self.trainer: Any = None  # coordinator.trainer.Trainer while a job runs
        self.staged: dict[str, dict[str, str]] = {}  # party -> file staged there this job -> its SHA-256

    async def run(self) -> JobRecord:
        """The job: its log, the plan's approvals, then `steps`; whatever happens, `close`."""
        self.job = JobLog(self.config.job_log_path).start(
            self.record.job_id, self.config.plan_hash, list(self.clients)
        )
        try:
            if self.config.require_approvals:
                PlanApprovals.collect(self.plan, self.config.path).require_all()
            await self.steps()
        except BaseException as error:
            self.finish_log(f"error: {type(error).__name__}: {error}")
            raise
        finally:
            await self.close()
        self.finish_log("ok")
        return self.record

    async def steps(self) -> None:
        """Handshake, marginal rounds, fit, results, evaluation and gate, delivery."""
        later = prefetch()
        self.trainer = self.start_trainer()
        await self.timed("handshake", self.handshake())
        measurements = await self.measure()
        assert self.planner is not None
        model = await self.timed("fit", asyncio.to_thread(self.planner.estimate, measurements))
        await asyncio.to_thread(later.join)
        from coordinator.evaluation import evaluate
        from coordinator.results import build_results

        results = await self.timed(
            "results",
            asyncio.to_thread(
                build_results, self.config, model, measurements, self.record, self.rng, self.trainer
            ),
        )
        results = await evaluate(self, results)  # issue 6: stage, evaluation rounds, gate
        await self.finish_delivery(results)

    async def close(self) -> None:
        if self.trainer is not None:
            self.trainer.close()
        for client in self.clients.values():
            await client.close()

    def start_trainer(self) -> Any:
        """The model's worker process (coordinator/trainer.py), importing while the rounds run; None when
        the plan trains no model."""
        if not getattr(self.plan, "target", None):
            return None
        from coordinator.trainer import Trainer

        return Trainer()

    def finish_log(self, outcome: str) -> None:
        for pid, client in self.clients.items():
            self.job.add_bytes(pid, sent=client.bytes_sent, received=client.bytes_received)
        self.job.finish(outcome, {"rho_spent": self.record.rho_spent})

    async def timed(self, stage: str, work: Awaitable[T]) -> T:
        start = time.perf_counter()
        with self.job.stage(stage):
            result = await work
        self.record.timings[stage] = self.record.timings.get(stage, 0.0) + time.perf_counter() - start
        progress(f"{stage}: {time.perf_counter() - start:.2f} s")
        return result

    async def gather(self, calls: Mapping[str, Awaitable[T]], stage: str, required: int) -> dict[str, T]:
        """Run one stage on several parties at once; parties that fail drop out; too few -> abort."""
        names = list(calls)
        outcomes = await asyncio.gather(*calls.values(), return_exceptions=True)
        ok: dict[str, T] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.info("%s: party %s dropped: %s", stage, name, outcome)  # printed once, by progress()
                progress(f"{stage}: party {name} dropped out: {outcome}")
                if not isinstance(outcome, CleanroomError):
                    raise outcome
                self.last_errors[name] = outcome
                self.job.dropped(name, stage, str(outcome))
            else:
                ok[name] = outcome
        if len(ok) < required:
            reasons = "; ".join(str(e) for e in self.last_errors.values())
            raise ProtocolAbort(
                f"{stage}: only {len(ok)} of {len(names)} parties answered, {required} needed: {reasons}"
            )
        return ok

    async def handshake(self) -> None:
        """Every member must accept plan and schema; any refusal stops the job before any budget is spent."""
        hello = wire.Hello(
            self.record.job_id,
            self.config.plan_hash,
            self.config.schema.hash(),
            self.config.coordinator_id,
            SOFTWARE_VERSION,
        )
        self.last_errors = {}
        pins = {p: c.verify_pin(self.members[p].cert_sha256) for p, c in self.clients.items()}
        await self.gather(pins, "certificate check", len(self.clients))
        replies = await self.gather(
            {p: c.hello(hello) for p, c in self.clients.items()}, "handshake", len(self.clients)
        )
        self.first_round = max(reply.next_round for reply in replies.values())
        self.check_budgets(replies)
        for pid, reply in replies.items():
            if reply.party_id != pid:
                raise PreconditionFailed(
                    f"handshake: node at {self.members[pid].address} answered as {reply.party_id!r}"
                )
        progress(
            f"handshake: {len(replies)} parties agreed on plan {self.config.plan_hash[:12]} "
            f"and schema {hello.schema_hash[:12]} (job {self.record.job_id[:12]})"
        )

    def job_rho(self) -> float:
        return cdp_rho(float(self.plan.max_epsilon_per_job), float(self.plan.delta))

    def check_budgets(self, replies: dict[str, wire.HelloReply]) -> None:
        """Refuse a job some party could not finish: no round is run, so nothing is spent on it."""
        need = self.job_rho()
        for pid, reply in replies.items():
            left = min(reply.remaining_rho, reply.plan_remaining_rho)
            if need > left * (1 + 1e-9):
                raise BudgetExceeded(
                    f"handshake: party {pid} has rho {left:.6g} left (dataset {reply.remaining_rho:.6g}, "
                    f"plan {reply.plan_remaining_rho:.6g}); this job needs {need:.6g}; nothing was spent"
                )

    def n_min(self) -> int:
        return int(self.plan.n_min)

    async def measure(self) -> list[Measurement]:
        from cleanroom.evaluation.release import synthesis_rho

        rho_total = synthesis_rho(self.job_rho(), float(self.plan.evaluation_share))
        self.planner = planner = make_planner(
            self.plan.synthesizer, self.config.schema, rho_total, layout=self.plan.noise_layout,
            settings=self.plan.synthesizer_settings, target=self.plan.target,
        )  # fmt: skip
        return await self.run_rounds(planner, self.aggregate_round)

    async def run_rounds(
        self, planner: Planner, run_round: Callable[[int, RoundSpec], Awaitable[list[Measurement]]]
    ) -> list[Measurement]:
        """The planner's rounds one after another, each numbered after the plan's rounds already used."""
        measurements: list[Measurement] = []
        spec = planner.first_round()
        index = 0
        while spec is not None:
            round_number = self.first_round + index
            measurements += await self.timed(f"round_{index}", run_round(round_number, spec))
            spec = planner.next_round(measurements)
            index += 1
        return measurements

    async def aggregate_round(self, index: int, spec: RoundSpec) -> list[Measurement]:
        domain = self.config.schema.domain
        cliques = tuple(domain.canonical(c) for c in spec.cliques)
        sigma_party2 = Fraction(spec.sigma_total2) / self.n_min()
        request = wire.RoundRequest(
            self.record.job_id, f"{self.record.job_id}/{index}", index, cliques, sigma_party2
        )
        length = sum(domain.project(c).size() for c in cliques)
        total, survivors, variance = await self.secure_sum(request, length)
        if index == self.first_round:
            self.record_holdout_sizing()
        tables = split_vector(total, domain, list(cliques))
        stddev = math.sqrt(variance)
        self.record.rho_spent += float(spec.rho)
        self.record.rounds.append(
            {
                "round": index,
                "name": getattr(spec, "name", str(index)),
                "cliques": len(cliques),
                "cells": length,
                "survivors": list(survivors),
                "rho": float(spec.rho),
                "sigma_party2": str(sigma_party2),
                "noise_sd": stddev,
            }
        )
        progress(
            f"round {index} ({getattr(spec, 'name', '')}): {len(cliques)} marginals, {length} cells, "
            f"{len(survivors)} parties"
        )
        return [Measurement(c, t.astype(float), stddev) for c, t in zip(cliques, tables, strict=True)]

    def session_id(self, spec: wire.RoundRequest) -> bytes:
        """The round's sid: bound to the collaboration, round number, plan and the whole request."""
        return session_id(self.plan.collaboration_id, spec.round, self.config.plan_hash, spec.digest())

    def record_holdout_sizing(self) -> None:
        """Every party charged its membership-holdout sizing (a noisy row count it keeps) when it opened the
        job's first round; the coordinator derives the same rho from the plan, and learns nothing else."""
        from cleanroom.evaluation.release import holdout_sizing

        sizing = holdout_sizing(self.job_rho(), float(self.plan.evaluation_share))
        self.record.holdout_rho = sizing.rho
        self.record.rho_spent += sizing.rho

    async def secure_sum(
        self, spec: wire.RoundRequest, length: int
    ) -> tuple[np.ndarray, tuple[str, ...], float]:
        """One Bonawitz session over gRPC; the SecAggServer state machine builds requests, checks answers.
        Returns the sum, its survivors and its per-cell noise variance (after the survivors' removals)."""
        server = SecAggServer(self.manifest, self.session_id(spec), length)
        stages = (
            ("AdvertiseKeys", server.advertise_keys_requests, server.collect_advertise_keys),
            ("ShareKeys", server.share_keys_requests, server.collect_share_keys),
            ("MaskedInput", server.masked_input_requests, server.collect_masked_input),
            ("ConsistencyCheck", server.consistency_check_requests, server.collect_consistency_check),
            ("Unmask", server.unmask_requests, server.collect_unmask),
        )
        for name, build, collect in stages:
            requests = build()
            self.last_errors = {}
            calls = {p: self.clients[p].stage(name, r, spec) for p, r in requests.items()}
            responses = await self.gather(calls, name, required=1)
            collect(responses)
        for party, reason in server.rejected.items():
            progress(f"round {spec.round}: party {party} dropped out: {reason}")
        total = np.asarray(server.result(), dtype=np.int64)
        for party in set(self.members) - set(server.survivors):
            self.absent.setdefault(party, f"took no part in round {spec.round}")
        survivors = tuple(server.survivors)
        layout = self.plan.noise_layout
        variance = layout.summed_variance(spec.sigma_party2, len(survivors), len(server.trimmed))
        return total, survivors, variance

    async def finish_delivery(self, results: dict[str, Path]) -> None:
        """Deliver the results, record the job, and fail if any party could not receive them."""
        await self.timed("deliver", self.deliver(results))
        self.write_record()
        if self.record.undelivered:
            failed = "; ".join(f"{p}: {e}" for p, e in self.record.undelivered.items())
            raise ProtocolAbort(f"job done but results could not be delivered to {failed}")

    async def deliver(self, results: dict[str, Path]) -> None:
        """Send each entitled party the files its abilities allow; one failure does not stop the others."""
        calls = {}
        metas = await asyncio.to_thread(file_metas, results)  # hashed once for every party
        for pid, member in self.members.items():
            abilities = set(getattr(member, "abilities", ()))
            if pid in self.absent and "receive_results" in abilities:
                progress(f"no results for {pid}: it {self.absent[pid]}")
            elif "receive_results" in abilities:
                files = {name: path for name, path in results.items() if _entitled(name, abilities)}
                calls[pid] = self.deliver_to(pid, files, metas)
        self.last_errors = {}
        delivered = await self.gather(calls, "deliver", required=0)
        for pid, written in delivered.items():
            self.record.delivered[pid] = written
            progress(f"delivered {', '.join(written)} to {pid}")
        self.record.undelivered = {pid: str(error) for pid, error in self.last_errors.items()}
        for pid, reason in self.absent.items():
            if "receive_results" in set(getattr(self.members[pid], "abilities", ())):
                self.record.undelivered[pid] = f"not sent: it {reason}"

    async def deliver_to(
        self, pid: str, files: dict[str, Path], metas: dict[str, wire.ResultFile]
    ) -> list[str]:
        """Deliver without resending what the party holds staged (same digest); should it refuse that (its
        staged copy is gone), send everything once more."""
        staged = self.staged.get(pid, {})
        held = frozenset(n for n in files if staged.get(n) == metas[n].sha256)
        client = self.clients[pid]
        if not held:
            return await client.deliver(self.record.job_id, files, metas)
        try:
            return await client.deliver(self.record.job_id, files, metas, held)
        except CleanroomError as error:
            log.warning("deliver: %s could not use its staged copy (%s); sending every file", pid, error)
            return await client.deliver(self.record.job_id, files, metas)

    def write_record(self) -> None:
        out = self.config.out
        out.mkdir(parents=True, exist_ok=True)
        uploads = {
            p: {"bytes_uploaded": c.bytes_received, "vector_bytes": c.vector_bytes}
            for p, c in self.clients.items()
        }
        table_bytes = 8 * sum(r["cells"] for r in self.record.rounds)
        data = {
            "job_id": self.record.job_id,
            "timings_s": self.record.timings,
            "rounds": self.record.rounds,
            "rho_spent": self.record.rho_spent,
            "holdout_sizing_rho": self.record.holdout_rho,
            "delivered": self.record.delivered,
            "undelivered": self.record.undelivered,
            "uploads": uploads,
            "table_bytes_per_party": table_bytes,
            "masking_graph": {  # complete, or sparse with this many neighbours per party (docs/secagg.md)
                "neighbours": self.manifest.neighbours or self.manifest.n - 1,
                "share_threshold": self.manifest.share_threshold,
                "sparse": self.manifest.sparse,
            },
        }
        (out / "job.json").write_text(json.dumps(data, indent=2))


def _entitled(name: str, abilities: set[str]) -> bool:
    needed = {"report.json": "receive_results", "model.onnx": "receive_model"}.get(
        name, "receive_synthetic_data"
    )
    return needed in abilities


async def run_job(config: CoordinatorConfig) -> JobRecord:
    if getattr(config.plan, "partitioning", "horizontal") == "vertical":  # docs/vertical.md
        from coordinator.vertical import VerticalWorkflow

        return await VerticalWorkflow(config).run()
    return await Workflow(config).run()
