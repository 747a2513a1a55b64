"""The party node's logic, free of grpc: every request is checked against the agreed plan before it is served.

What leaves the node: a handshake answer, secure-aggregation keys/shares/signatures, and masked vectors of
noised marginal counts (noise drawn only after the ledger has durably charged the release). Raw rows never do.
Checks, in order: caller is the plan's coordinator and claims no other identity (the servicer's Authorizer),
plan approved by this party, plan and schema hashes agreed, data matched the schema at start-up, `max_jobs`;
per round: job handshaken, session id = SHA256(collaboration | round | plan) and never reused, 1-way or
2-way cliques over the schema's measured columns under the cell caps, per-party noise variance >= 4 (sigma
>= 2), the plan's total and per-job (epsilon, delta) and the dataset's own ledger budget not exceeded.
Every answer and refusal goes to the party's hash-chained audit log, which any plan member holding
`read_audit_log` (identified by its certificate, under the approved plan) may read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cleanroom.accounting import DistributedGaussian, NoiseLayout, cdp_rho
from cleanroom.errors import (
    CleanroomError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ProtocolAbort,
    SchemaError,
)
from cleanroom.evaluation import release
from cleanroom.ledger import BudgetLimit
from cleanroom.marginals import flatten_tables
from cleanroom.noise import party_noise_share
from cleanroom.plan import require_approved_hash
from cleanroom.retention import mark_delivered
from cleanroom.secagg.manifest import session_id
from cleanroom.secagg.party import PartyState, SecAggParty
from party.governance import require_audit_reader
from party.integrity import append_charge
from transport import wire
from transport.auth import Peer
from transport.options import MAX_MESSAGE_BYTES

log = logging.getLogger("cleanroom.party")

SOFTWARE_VERSION = "cleanroom/0.1 transport.v1"
MIN_SIGMA_PARTY2 = 4  # per-party sigma >= 2 keeps the distributed discrete Gaussian's tau term negligible
DEFAULT_MAX_TABLE_CELLS = 1_000_000
MAX_OPEN_SESSIONS = 2  # the coordinator runs one round at a time; many open rounds is an attack
FINISHED = (PartyState.DONE, PartyState.ABORTED)
MAX_RESULT_BYTES = 4 * 1024**3  # a coordinator cannot fill the party's disk through DeliverResults
FILE_ABILITY = {
    "report.json": "receive_results",
    "synthetic.csv": "receive_synthetic_data",
    "synthetic.parquet": "receive_synthetic_data",
    "model.onnx": "receive_model",
}


def release_rho(n_tables: int, sigma_party2: Fraction, layout: NoiseLayout, cells: int) -> float:
    """zCDP of one round: K tables of sensitivity 1 (L1 = K, L2 = sqrt K), the n_min x shares honest noise
    draws of `layout` (each sigma_party2 / shares), with tau."""
    noise = DistributedGaussian.of(sigma_party2 * layout.n_min, layout)
    return float(noise.rho(sensitivity_l1=n_tables, sensitivity_l2=n_tables**0.5, dim=max(1, cells)))


@dataclass
class RoundState:
    """One open secure-aggregation session of this party (in memory only: a restart ends it)."""

    request: wire.RoundRequest
    rho: float
    party: SecAggParty
    vector: np.ndarray | None = None  # this session's noised vector, between MaskedInput and Unmask
    spare_draws: list[np.ndarray] = field(default_factory=list)  # draws a full survivor list lets it remove
    released: bool = False


@dataclass
class PartyNode:
    party_id: str
    plan: Any
    plan_hash: str
    approved_plans: tuple[str, ...]
    schema: Any
    schema_hash: str
    source: Any
    ledger: Any
    identity_key: Any
    output_dir: Path
    manifest: Any = None  # cleanroom.secagg.manifest.SecAggManifest of the plan
    reveals: Any = None  # durable record of revealed share kinds (None: in memory)
    audit: Any = None
    job_id: str | None = None
    rounds: dict[bytes, RoundState] = field(default_factory=dict)
    holdout_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    bytes_uploaded: int = 0
    evaluation: Any = None  # party.evaluation.PartyEvaluation (issue 6); None: no evaluation rounds

    # ---- handshake ----------------------------------------------------------------------------------

    def record(self, event: str, outcome: str, **fields: Any) -> None:
        """Append to this party's hash-chained audit log (every answer and refusal)."""
        if self.audit is not None:
            fields.setdefault("plan_hash", self.plan_hash)
            self.audit.append(event, outcome, requester=self.plan.coordinator, **fields)

    def record_charge(self, reservation: Any) -> None:
        """Audit one ledger reservation (event "charge", outcome "reserved", its release id and exact rho
        text); call it right after every successful `ledger.reserve`. `party.integrity.check_state` compares
        these entries with the ledger at every start."""
        if self.audit is not None:
            append_charge(self.audit, reservation, self.plan.coordinator)

    def read_audit_log(self, peer: Peer, plan_hash: str) -> tuple[bytes, bytes]:
        """This party's audit log and head anchor, for a plan member holding `read_audit_log`."""
        requester = f"{peer.role}/{peer.node_id}"
        try:
            require_approved_hash(plan_hash, self.approved_plans)
            if plan_hash.lower() != self.plan_hash:
                raise PermissionDenied(f"plan {plan_hash} is not the plan this party serves")
            require_audit_reader(self.plan, peer)
        except PermissionDenied as error:
            log.warning("ReadAuditLog refused: %s", error)
            if self.audit is not None:
                self.audit.append("read_audit_log", "refused", requester=requester, plan_hash=plan_hash,
                                  detail=f"ReadAuditLog: {error}")  # fmt: skip
            raise
        if self.audit is None:
            raise NotFound(f"party {self.party_id} keeps no audit log")
        # head first: entries appended meanwhile only make the head lag, never look like a truncation
        head = self.audit.head_path.read_bytes() if self.audit.head_path.exists() else b""
        data = self.audit.path.read_bytes() if self.audit.path.exists() else b""
        if len(data) + len(head) > MAX_MESSAGE_BYTES - 1024:
            raise PreconditionFailed(
                f"party {self.party_id}: audit log {self.audit.path.name} ({len(data)} bytes) exceeds one "
                "message; copy it from the node's disk"
            )
        self.audit.append("read_audit_log", "answered", requester=requester, plan_hash=plan_hash,
                          detail={"bytes": len(data)})  # fmt: skip
        return data, head

    def hello(self, msg: wire.Hello) -> wire.HelloReply:
        try:
            reply = self._hello(msg)
        except CleanroomError as error:
            self.record(
                "start_job", "refused", job_id=msg.job_id, plan_hash=msg.plan_hash or None,
                rho_remaining=float(self.ledger.remaining()), detail=error.public_message(),
            )  # fmt: skip
            raise
        self.record("start_job", "answered", job_id=msg.job_id, rho_remaining=reply.remaining_rho)
        return reply

    def _hello(self, msg: wire.Hello) -> wire.HelloReply:
        require_approved_hash(msg.plan_hash, self.approved_plans)  # names the unapproved hash
        if msg.plan_hash != self.plan_hash:
            raise PreconditionFailed(
                f"party {self.party_id}: plan hash {msg.plan_hash[:16]}... is not this party's plan "
                f"{self.plan_hash[:16]}..."
            )
        require_approved_hash(self.plan_hash, self.approved_plans)
        if msg.schema_hash != self.schema_hash:
            raise SchemaError(
                f"party {self.party_id}: schema hash {msg.schema_hash[:16]}... differs from this party's "
                f"schema {self.schema_hash[:16]}..."
            )
        if not msg.job_id:
            raise InvalidInput(f"party {self.party_id}: Hello without a job id")
        self.check_job_count(msg.job_id)
        self.validate_data()
        self.close_sessions()
        self.job_id = msg.job_id
        if self.evaluation is not None:
            self.evaluation.discard_staged(keep=msg.job_id)  # earlier jobs' staged model and data
        log.info("job %s: handshake with coordinator %s accepted", msg.job_id, msg.coordinator_id)
        return wire.HelloReply(
            self.party_id,
            True,
            self.schema_hash,
            SOFTWARE_VERSION,
            self.ledger.remaining(),
            self.next_round(),
            self.plan_remaining_rho(),
        )

    def data_problem(self) -> CleanroomError | None:
        """The first value the schema rejects (counting every 1-way table), or None: for local eyes only."""
        try:
            self.source.check_schema()
            self.source.count_tables([(a,) for a in self.schema.domain.attrs])
        except CleanroomError as error:
            return error
        return None

    def validate_data(self) -> None:
        """Refuse, naming only the column, when the data no longer fit the schema (row and value: local log).

        Runs at start-up (`party.run`) and at every handshake, before anything of the job is charged.
        """
        problem = self.data_problem()
        if problem is None:
            return
        log.error("party %s: data do not match the schema: %s", self.party_id, problem)
        column = getattr(problem, "column", None)
        where = f" in column {column!r}" if column else ""
        raise SchemaError(
            f"party {self.party_id}: its data do not match the schema{where}; the details are in its "
            "local log"
        )

    def check_job_count(self, job_id: str) -> None:
        """Refuse a new job once the plan's `max_jobs` (0 = no limit) jobs were charged (the ledger re-checks
        this atomically with every reservation)."""
        limit = int(getattr(self.plan, "max_jobs", 0) or 0)
        jobs = {e.job_id for e in self.ledger.entries() if e.plan_hash == self.plan_hash}
        if limit and job_id not in jobs and len(jobs) >= limit:
            raise PermissionDenied(f"party {self.party_id}: the plan allows {limit} jobs, all already run")

    def plan_remaining_rho(self) -> float:
        total = cdp_rho(float(self.plan.epsilon), float(self.plan.delta))
        return max(0.0, total - float(self.ledger.spent_by_plan().get(self.plan_hash, 0.0)))

    def used_rounds(self) -> dict[int, str]:
        """Round number -> release id of every round charged under this plan (from the durable ledger)."""
        return {
            int(e.detail["round"]): e.release_id
            for e in self.ledger.entries()
            if e.plan_hash == self.plan_hash and "round" in e.detail
        }

    def next_round(self) -> int:
        return max(self.used_rounds(), default=-1) + 1

    # ---- secure-aggregation stages (cleanroom.secagg.messages in and out) ------------------------------

    def advertise_keys(self, spec: wire.RoundRequest, request: Any) -> Any:
        """Open a round: check it, charge it (atomically with every limit), then take part in its session.

        The session id binds the whole request, so a coordinator cannot give parties different requests
        in one session; the ledger refuses a round number or release id used before (even across jobs and
        restarts), so a charged release can never be answered again in a new session.
        """
        existing = self.rounds.get(request.sid)
        if existing is not None and existing.request == spec:
            return existing.party.advertise_keys(request)  # a verbatim retry gets the identical answer
        try:
            rho = self.check_round(spec, request.sid)
            self.require_new_release(spec)  # a refused round must not size (and charge) a holdout first
            self.size_holdout(spec.job_id)
            reservation = self.reserve(spec, rho)
        except CleanroomError as error:
            self.record_refusal("measure", spec, error)
            raise
        self.record_charge(reservation)
        party = SecAggParty(self.manifest, self.party_id, self.identity_key, request.sid, self.reveals)
        self.rounds[request.sid] = RoundState(spec, rho, party)
        return party.advertise_keys(request)

    def reserve(self, spec: wire.RoundRequest, rho: float) -> Any:
        """Charge the round in the ledger: dataset, plan and job limits and the round number, atomically."""
        detail = {
            "round": spec.round,
            "cliques": [list(c) for c in spec.cliques],
            "sigma_party2": str(spec.sigma_party2),
            **({"statistic": spec.statistic} if spec.statistic else {}),
        }
        return self.charge(spec.release_id, rho, spec.job_id, detail, spec.round)

    def charge(
        self, release_id: str, rho: float, job_id: str, detail: dict[str, Any], round_number: int | None
    ) -> Any:
        """One ledger reservation under the dataset, plan and job limits, atomically with the checks."""
        delta = float(self.plan.delta)
        limits = (
            BudgetLimit("this plan", cdp_rho(float(self.plan.epsilon), delta), self.plan_hash),
            BudgetLimit(
                f"job {job_id}", cdp_rho(float(self.plan.max_epsilon_per_job), delta), self.plan_hash, job_id
            ),
        )
        return self.ledger.reserve(
            release_id, rho, self.plan_hash, job_id, detail,
            round_number=round_number, limits=limits, max_jobs=int(getattr(self.plan, "max_jobs", 0) or 0),
        )  # fmt: skip

    def require_new_release(self, spec: wire.RoundRequest) -> None:
        """Refuse a release id charged before (the ledger refuses it again, atomically, when charging)."""
        if self.ledger.entry(spec.release_id) is not None:
            raise PreconditionFailed(
                f"party {self.party_id}, round {spec.round}: release {spec.release_id!r} was already "
                "charged; a release is answered in exactly one session"
            )

    def size_holdout(self, job_id: str) -> None:
        """Fix the job's membership holdout before its first round (`release.holdout_sizing`).

        The noisy row count is drawn once per job and charged like a release; it stays in this party's
        private ledger (the audit entries have only the release id and rho) and is read back after a
        restart, never drawn again. Never sent, so a coordinator can neither choose nor learn the fraction.
        """
        evaluation = self.evaluation
        if evaluation is None or evaluation.sized(job_id):
            return
        with self.holdout_lock:
            release_id = f"{job_id}/membership-holdout"
            entry = self.ledger.entry(release_id)
            if entry is None:
                entry = self.charge_holdout_count(job_id, release_id)
            evaluation.set_holdout(job_id, float(entry.detail["noisy_rows"]))

    def charge_holdout_count(self, job_id: str, release_id: str) -> Any:
        """Draw the party's noisy row count, charge it (atomically with every limit) and audit the charge."""
        job_rho = cdp_rho(float(self.plan.max_epsilon_per_job), float(self.plan.delta))
        sizing = release.holdout_sizing(job_rho, float(self.plan.evaluation_share))
        try:
            noisy = self.evaluation.noisy_rows(sizing.sigma2)
        except Exception as error:  # noqa: BLE001 - like exact_vector: no value, row or count leaves the node
            log.error("job %s: could not count this party's records: %s", job_id, error)
            raise ProtocolAbort(
                f"party {self.party_id}: could not count its records to size the membership holdout; nothing "
                "was charged; the reason is in the party's local log"
            ) from None
        detail = {"statistic": "membership holdout size", "sigma2": str(sizing.sigma2), "noisy_rows": noisy}
        entry = self.charge(release_id, sizing.rho, job_id, detail, None)
        self.record_charge(entry)
        self.record(
            "size_holdout", "answered", job_id=job_id, statistic="membership holdout size",
            noise_scale=float(sizing.sigma2) ** 0.5, rho_charged=sizing.rho,
            rho_remaining=float(self.ledger.remaining()), detail="noisy row count kept here, never sent",
        )  # fmt: skip
        return entry

    def record_refusal(self, event: str, spec: wire.RoundRequest, error: CleanroomError) -> None:
        self.record(
            event, "refused", job_id=spec.job_id, round=spec.round, cliques=spec.cliques,
            detail=error.public_message(),
        )  # fmt: skip

    def share_keys(self, request: Any) -> Any:
        return self.session(request.sid).party.share_keys(request)

    def masked_input(self, request: Any) -> Any:
        state = self.session(request.sid)
        vector = self.noised_vector(state)
        response = state.party.masked_input(request, vector)
        spec = state.request
        if not state.released:
            state.released = True
            self.ledger.mark_released(spec.release_id)
            self.bytes_uploaded += len(response.vector)
            self.record(
                "measure", "answered", job_id=spec.job_id, round=spec.round, cliques=spec.cliques,
                statistic=spec.statistic or "marginal counts", noise_scale=float(spec.sigma_party2) ** 0.5,
                rho_charged=state.rho, rho_remaining=float(self.ledger.remaining()),
            )  # fmt: skip
        return response

    def consistency_check(self, request: Any) -> Any:
        return self.session(request.sid).party.consistency_check(request)

    def unmask(self, request: Any) -> Any:
        state = self.session(request.sid)
        response = state.party.unmask(request, lambda survivors: self.removable_noise(state, survivors))
        state.vector = None  # the session is over: its noised vector is no longer needed anywhere
        state.spare_draws = []
        return response

    def removable_noise(self, state: RoundState, survivors: tuple[str, ...]) -> np.ndarray | None:
        """The noise draws a signed survivor list of this size does not need (`NoiseLayout.kept`): pure
        noise, independent of every row; the honest survivors keep the draws the round was charged for."""
        layout = self.plan.noise_layout
        spare = layout.shares - layout.kept(len(survivors))
        if spare == 0:
            return None
        removed = np.sum(state.spare_draws[-spare:], axis=0)
        kept = layout.shares - spare
        self.record(
            "remove_noise", "answered", job_id=state.request.job_id, round=state.request.round,
            noise_scale=float(state.request.sigma_party2 / layout.shares * kept) ** 0.5,
            detail={"survivors": len(survivors), "draws_removed": spare, "draws_kept": kept},
        )  # fmt: skip
        return removed

    def session(self, sid: bytes) -> RoundState:
        state = self.rounds.get(sid)
        if state is None:
            raise PreconditionFailed(f"party {self.party_id}: no open session {sid.hex()[:16]}...")
        return state

    def open_sessions(self) -> int:
        return sum(1 for s in self.rounds.values() if s.party.state not in FINISHED)

    def close_sessions(self) -> None:
        """Forget every session (a new job starts): none of them can be continued or re-opened."""
        for state in self.rounds.values():
            state.vector = None
        self.rounds.clear()

    # ---- checks -------------------------------------------------------------------------------------

    def check_session(self, request: Any, sid: bytes) -> str:
        """A round request's job is handshaken, its session id binds it, and its round number is unused;
        returns the "party P, round R" prefix of every refusal (horizontal and vertical rounds alike)."""
        where = f"party {self.party_id}, round {request.round}"
        if self.job_id is None or request.job_id != self.job_id:
            raise PreconditionFailed(f"{where}: job {request.job_id!r} has not completed the handshake")
        expected_sid = session_id(self.plan.collaboration_id, request.round, self.plan_hash, request.digest())
        if sid != expected_sid:
            raise PermissionDenied(
                f"{where}: session id does not match SHA256(collaboration | round | plan | request)"
            )
        if request.round in self.used_rounds():
            raise PermissionDenied(f"{where}: round already opened; a round and its session are used once")
        return where

    def check_round(self, request: wire.RoundRequest, sid: bytes) -> float:
        """Validate a round spec against the plan; returns its zCDP cost rho. Nothing is charged here."""
        where = self.check_session(request, sid)
        if self.open_sessions() >= MAX_OPEN_SESSIONS:
            raise PreconditionFailed(
                f"{where}: {MAX_OPEN_SESSIONS} sessions are open; finish them before opening another"
            )
        if request.sigma_party2 < MIN_SIGMA_PARTY2:
            raise InvalidInput(
                f"{where}: per-party noise variance {request.sigma_party2} is below {MIN_SIGMA_PARTY2}"
            )
        if request.statistic:  # an evaluation round (party/evaluation.py)
            if self.evaluation is None:
                raise PermissionDenied(f"{where}: this node runs no evaluation rounds")
            return float(self.evaluation.check_round(request, self.plan.noise_layout, where))
        self.check_cliques(request.cliques, where)
        cells = self.round_length(request)
        return release_rho(len(request.cliques), request.sigma_party2, self.plan.noise_layout, cells)

    def data_members(self) -> dict[str, Any]:
        return {m.id: m for m in self.plan.data_parties}

    def round_length(self, request: wire.RoundRequest) -> int:
        if request.statistic:
            return int(request.length)
        return sum(self.schema.domain.project(c).size() for c in request.cliques)

    def check_cliques(self, cliques: tuple[tuple[str, ...], ...], where: str) -> None:
        domain = self.schema.domain
        max_cells = int(getattr(self.plan, "max_table_cells", 0) or DEFAULT_MAX_TABLE_CELLS)
        total = 0
        for clique in cliques:
            if not 1 <= len(clique) <= 2 or len(set(clique)) != len(clique):
                raise PermissionDenied(f"{where}: clique {clique} is not a 1-way or 2-way marginal")
            unknown = [a for a in clique if a not in domain]
            if unknown:
                raise PermissionDenied(
                    f"{where}: clique {clique} names columns {unknown} not measured by the schema"
                )
            if tuple(clique) != domain.canonical(clique):
                raise InvalidInput(f"{where}: clique {clique} is not in canonical (schema) order")
            cells = domain.project(clique).size()
            if cells > max_cells:
                raise PermissionDenied(
                    f"{where}: clique {clique} has {cells} cells, over the cap {max_cells}"
                )
            total += cells
        if len(set(cliques)) != len(cliques):
            raise InvalidInput(f"{where}: a clique is requested twice")
        if 8 * total > MAX_MESSAGE_BYTES:
            raise PermissionDenied(f"{where}: {total} cells exceed the message-size limit")

    # ---- the only place data are touched ------------------------------------------------------------

    def noised_vector(self, state: RoundState) -> np.ndarray:
        """Exact vector + this party's noise share, once per session (the release was charged at opening).

        Kept in memory only for this session's retries; never stored, never recomputed with fresh noise.
        """
        if state.vector is None:
            if state.released or state.party.state is not PartyState.SHARED:
                raise PreconditionFailed(
                    f"party {self.party_id}, round {state.request.round}: MaskedInput is not expected now"
                )
            exact = self.exact_vector(state.request)
            layout = self.plan.noise_layout
            draw2 = state.request.sigma_party2 / layout.shares
            draws = [party_noise_share(len(exact), draw2, layout.shares) for _ in range(layout.shares)]
            state.spare_draws = draws[layout.kept(layout.n_parties) :]  # a full list keeps the fewest
            state.vector = exact + np.sum(draws, axis=0)
        return state.vector

    def exact_vector(self, request: wire.RoundRequest) -> np.ndarray:
        """The round's exact vector; any failure becomes one fixed message (details stay in the local log).

        The round is already charged, so a failure spends budget and reveals nothing: the wire and the
        audit log get only the round number, never a value, row or count.
        """
        try:
            vector = np.asarray(self.round_counts(request), dtype=np.int64)
            if vector.shape != (self.round_length(request),):
                raise InvalidInput(f"vector of {vector.shape} cells, expected {self.round_length(request)}")
        except Exception as error:  # noqa: BLE001 - every failure, whatever its text, is reported the same
            log.error("round %s: could not compute this party's input: %s", request.round, error)
            failure = ProtocolAbort(
                f"party {self.party_id}, round {request.round}: could not compute its input; it drops out "
                "of this round (charged); the reason is in the party's local log"
            )
            self.record("measure", "failed", job_id=request.job_id, round=request.round,
                        detail=failure.public_message())  # fmt: skip
            raise failure from None
        return vector

    def round_counts(self, request: wire.RoundRequest) -> np.ndarray:
        """The exact (un-noised) vector a round asks for: marginal tables or an evaluation statistic."""
        if request.statistic:
            return np.asarray(self.evaluation.vector(request.job_id, request.statistic), dtype=np.int64)
        cliques = list(request.cliques)
        if self.evaluation is not None:  # the job's training members only (party/evaluation.py)
            tables = self.evaluation.member_count_tables(request.job_id, cliques)
            return np.asarray(flatten_tables(tables), dtype=np.int64)
        return np.asarray(flatten_tables(self.source.count_tables(cliques)), dtype=np.int64)

    # ---- results ------------------------------------------------------------------------------------

    def begin_results(self, job_id: str, files: list[wire.ResultFile]) -> ResultWriter:
        try:
            if self.job_id is None or job_id != self.job_id:
                raise PreconditionFailed(f"party {self.party_id}: results for unknown job {job_id!r}")
            abilities = set(getattr(self.data_members().get(self.party_id), "abilities", ()))
            for f in files:
                if FILE_ABILITY[f.name] not in abilities or "receive_results" not in abilities:
                    raise PermissionDenied(
                        f"party {self.party_id} is not entitled to receive {f.name} under the plan"
                    )
            if not self.released_in(job_id):
                raise PermissionDenied(
                    f"party {self.party_id} took part in no round of job {job_id}; it receives no results"
                )
            if self.evaluation is not None:
                self.evaluation.check_delivery(job_id, files)
        except CleanroomError as error:
            self.record("receive_results", "refused", job_id=job_id, detail=error.public_message())
            raise
        writer = ResultWriter(self.output_dir, {f.name: f for f in files}, job_id, self.plan_hash)
        adopted = self.adopt_staged(job_id, files, writer)
        self.record(
            "receive_results", "answered", job_id=job_id,
            detail={"files": [f.name for f in files], **({"from_staged_copy": adopted} if adopted else {})},
        )  # fmt: skip
        return writer

    def adopt_staged(self, job_id: str, files: list[wire.ResultFile], writer: ResultWriter) -> list[str]:
        """Released files this party already holds as its staged (evaluated) copy, with the same digest, are
        copied from it: the coordinator does not send them again (coordinator.workflow.deliver)."""
        if self.evaluation is None:
            return []
        adopted = []
        for meta in files:
            source = self.evaluation.staged_copy(job_id, meta)
            if source is not None:
                writer.adopt(meta.name, source)
                adopted.append(meta.name)
        return adopted

    # ---- evaluation hooks (party/evaluation.py) -------------------------------------------------------

    def begin_staging(self, job_id: str, files: list[wire.ResultFile]) -> ResultWriter:
        if self.evaluation is None:
            raise PermissionDenied(f"party {self.party_id}: this node runs no evaluation")
        try:
            writer = self.evaluation.begin_staging(job_id, self.job_id, files)
        except CleanroomError as error:
            self.record("stage_evaluation", "refused", job_id=job_id, detail=error.public_message())
            raise
        self.record("stage_evaluation", "answered", job_id=job_id, detail={"files": [f.name for f in files]})
        return writer  # type: ignore[no-any-return]

    def finish_staging(self, job_id: str, writer: ResultWriter) -> list[str]:
        """Complete an upload; the staged model must pass its checks (party/evaluation.py), audited if not."""
        written = writer.finish()
        try:
            self.evaluation.check_staged(job_id, {name: writer.sha256(name) for name in written})
        except CleanroomError as error:
            self.record("stage_evaluation", "refused", job_id=job_id, detail=error.public_message())
            raise
        return written

    def released_in(self, job_id: str) -> bool:
        """Whether this party sent its input in at least one round of the job (from the durable ledger)."""
        return any(e.job_id == job_id and e.plan_hash == self.plan_hash and e.released for e in
                   self.ledger.entries())  # fmt: skip

    def finish_results(self, job_id: str, writer: ResultWriter) -> list[str]:
        written = writer.finish()
        if self.evaluation is not None:
            try:
                self.evaluation.finish_delivery(job_id, written, writer.directory)
            except Exception as error:  # noqa: BLE001 - the local report reads the party's rows
                log.error("job %s: could not write the local report: %s", job_id, error)
                raise PreconditionFailed(
                    f"party {self.party_id}: results received, but its local report could not be written; "
                    "the reason is in the party's local log"
                ) from None
        return written

    def budget(self) -> wire.BudgetStatus:
        total = float(self.ledger.spent() + self.ledger.remaining())
        return wire.BudgetStatus(
            total, float(self.ledger.spent()), float(self.ledger.remaining()), self.bytes_uploaded
        )


@dataclass
class ResultWriter:
    """Writes streamed result files to `<name>.part`, hashing as it writes; verifies size and SHA-256, then
    renames into place (no file is ever read back whole)."""

    directory: Path
    expected: dict[str, wire.ResultFile]
    job_id: str = ""
    plan_hash: str | None = None
    bytes_written: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    digests: dict[str, Any] = field(default_factory=dict)  # name -> running hashlib.sha256

    handles: dict[str, Any] = field(default_factory=dict)  # name -> open .part file (closed by finish)

    def __post_init__(self) -> None:
        total = sum(f.size for f in self.expected.values())
        if total > MAX_RESULT_BYTES:
            raise InvalidInput(f"DeliverResults: {total} bytes announced, over the limit {MAX_RESULT_BYTES}")
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in self.expected:
            self.handles[name] = self.part(name).open("wb")  # one open file per upload, not per chunk
            self.offsets[name] = 0
            self.digests[name] = hashlib.sha256()

    def part(self, name: str) -> Path:
        return self.directory / f".{name}.part"

    def write(self, name: str, offset: int, data: bytes) -> None:
        if name not in self.expected:
            raise InvalidInput(f"DeliverResults: chunk for {name!r}, which the header did not announce")
        if offset != self.offsets[name] or offset + len(data) > self.expected[name].size:
            raise InvalidInput(
                f"DeliverResults: chunk of {name} at offset {offset} is out of order or too long"
            )
        self.handles[name].write(data)
        self.digests[name].update(data)
        self.offsets[name] += len(data)
        self.bytes_written += len(data)

    def adopt(self, name: str, source: Path) -> None:
        """Fill `name` from a local copy (the file staged for evaluation) instead of received chunks; hashed
        as it is copied, so `finish` checks it against the announced size and digest like any upload."""
        with source.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                self.write(name, self.offsets[name], chunk)

    def close(self) -> None:
        """Close the .part files (an upload that failed leaves them to the next upload or cleanup)."""
        for handle in self.handles.values():
            handle.close()

    def sha256(self, name: str) -> str:
        """The digest of what was written of `name` (hashed as it arrived; the file is never re-read)."""
        return str(self.digests[name].hexdigest())

    def finish(self) -> list[str]:
        self.close()
        for name, meta in self.expected.items():
            digest = self.digests[name].hexdigest()
            if self.offsets[name] != meta.size or digest != meta.sha256:
                raise InvalidInput(f"DeliverResults: {name} arrived incomplete or corrupted")
        for name in self.expected:
            os.replace(self.part(name), self.directory / name)
        # the stamp starts the retention clock
        mark_delivered(self.directory, datetime.now(UTC), job_id=self.job_id, plan_hash=self.plan_hash)
        return sorted(self.expected)
