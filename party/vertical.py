"""A party node of a vertical plan: the hardened round protocol around `cleanroom.vertical.party.VerticalJob`.

`VerticalPartyNode` is a `PartyNode` (handshake, budget, results, audit reading unchanged) whose data are
its own columns and the join key (`VerticalSpec.party_schema`). It refuses to start when its normalised
keys repeat or exceed the plan's `max_rows` (naming the column or the bound only), serves no horizontal
marginal or evaluation round, and answers the vertical stages (party/vertical_service.py):
setup -> blind -> encrypted list -> align, once per job after the handshake, then per round
open (check + charge, atomically with every limit, before anything is computed) -> aggregate -> release.
A round's answers are computed once per session and kept in memory only for verbatim retries.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cleanroom.encoding import encode
from cleanroom.errors import (
    CleanroomError,
    DataError,
    InvalidInput,
    PermissionDenied,
    PreconditionFailed,
    ProtocolAbort,
)
from cleanroom.vertical.layout import MAX_SIGMA2, EntryLayout, RoundLayout
from cleanroom.vertical.messages import (
    AggregateReply,
    BlindReply,
    EncryptedList,
    SetupReply,
    VerticalRoundRequest,
    setup_sid,
)
from cleanroom.vertical.paillier import PaillierPrivate
from cleanroom.vertical.party import VerticalJob
from cleanroom.vertical.spec import VerticalSpec, normalise_key
from party.node import MIN_SIGMA_PARTY2, PartyNode
from transport import wire

log = logging.getLogger("cleanroom.party")
MAX_VERTICAL_SESSIONS = 2


@dataclass
class VerticalSession:
    request: VerticalRoundRequest
    rho: float
    aggregate: AggregateReply | None = None
    released: np.ndarray | None = None


@dataclass
class VerticalPartyNode(PartyNode):
    vspec: Any = None  # VerticalSpec of the plan
    vjob: VerticalJob | None = None
    vsessions: dict[bytes, VerticalSession] = field(default_factory=dict)
    scheme_factory: Any = None  # tests may inject a key factory; None = a fresh Paillier key per job
    preparing: Any = None  # KeyPreparation: the next job's key and randomizers, computed while idle

    @property
    def party_schema(self) -> Any:
        return self.vspec.party_schema(self.schema, self.party_id)

    # ---- data ---------------------------------------------------------------------------------------

    def data_problem(self) -> CleanroomError | None:
        try:
            self.source.check_schema()
            self.source.count_tables([(c,) for c in self.vspec.columns[self.party_id]])
            self.job_data()
        except CleanroomError as error:
            return error
        return None

    def job_data(self) -> tuple[list[str], np.ndarray]:
        """Normalised keys and this party's codes (plan column order), checked; errors for local eyes."""
        schema = self.party_schema
        key = self.vspec.join_key
        frame = self.source.read_frame()
        if key not in frame.columns:
            raise DataError(f"{self.source.name}: the join key column {key!r} is missing", key)
        keys = [normalise_key(k) for k in frame[key]]
        present = [k for k in keys if k]
        if len(set(present)) != len(present):
            raise DataError(f"{self.source.name}: column {key!r} repeats keys after normalisation", key)
        bound = self.vspec.max_rows[self.party_id]
        if len(keys) > bound:
            raise DataError(
                f"{self.source.name}: {len(keys)} records exceed the plan's max_rows {bound}", key
            )
        encoded = encode(schema, frame[[c.name for c in schema.measured_columns]], source=self.source.name)
        order = [schema.domain.attrs.index(c) for c in self.vspec.columns[self.party_id]]
        return keys, np.asarray(encoded.codes)[:, order]

    def check_round(self, request: wire.RoundRequest, sid: bytes) -> float:
        raise PermissionDenied(
            f"party {self.party_id}: this plan is vertical; it answers vertical rounds only"
        )

    def _hello(self, msg: wire.Hello) -> wire.HelloReply:
        reply = super()._hello(msg)
        self.vjob = None  # a new job: fresh secrets and keys, nothing of the last job is reused
        self.vsessions.clear()
        return reply

    # ---- setup (once per job) -----------------------------------------------------------------------

    def vertical_setup(self, job_id: str) -> SetupReply:
        try:
            if self.job_id is None or job_id != self.job_id:
                raise PreconditionFailed(
                    f"party {self.party_id}: job {job_id!r} has not completed the handshake"
                )
            if self.vjob is not None:
                raise PreconditionFailed(f"party {self.party_id}: the job's PSI setup already ran")
            keys, codes = self.job_data()
            self.vjob = self._new_job(job_id, keys, codes)
            reply = self.vjob.setup()
        except CleanroomError as error:
            self.record("vertical_setup", "refused", job_id=job_id, detail=error.public_message())
            raise
        self.record("vertical_setup", "answered", job_id=job_id,
                    detail={"psi_entries": self.vspec.max_rows[self.party_id]})  # fmt: skip
        return reply

    def start_preparing(self) -> None:
        """Offline phase: the next job's Paillier key and the randomizers of its encrypted list, in a
        background thread while the node is idle (kept in memory only, each used once)."""
        if self.scheme_factory is None and self.preparing is None:
            layout = EntryLayout.for_party(self.vspec, self.schema.domain, self.party_id)
            count = self.vspec.list_size(self.party_id) * layout.n_ciphertexts
            self.preparing = KeyPreparation(self.party_id, count)

    def take_key(self) -> PaillierPrivate:
        """The prepared key (stopping its preparation: the job computes what is missing), else a new one."""
        preparing, self.preparing = self.preparing, None
        return preparing.take() if preparing is not None else PaillierPrivate.generate()

    def finish_results(self, job_id: str, writer: Any) -> list[str]:
        written = super().finish_results(job_id, writer)
        self.start_preparing()  # the job is over: prepare the next one
        return written

    def _new_job(self, job_id: str, keys: list[str], codes: np.ndarray) -> VerticalJob:
        other = self.vspec.other(self.party_id)
        kwargs = {"scheme_factory": self.scheme_factory or self.take_key}
        return VerticalJob(
            self.party_id, self.vspec, self.schema.domain, self.plan.collaboration_id,
            setup_sid(self.plan.collaboration_id, self.plan_hash, job_id), self.identity_key,
            self.plan.member(other).public_key(), keys, codes, **kwargs,
        )  # fmt: skip

    def job(self) -> VerticalJob:
        if self.vjob is None:
            raise PreconditionFailed(f"party {self.party_id}: the vertical setup has not run for this job")
        return self.vjob

    def vertical_blind(self, other: SetupReply) -> BlindReply:
        return self._audited("vertical_blind", lambda: self.job().blind(other))

    def vertical_list(self) -> EncryptedList:
        return self._audited("vertical_list", lambda: self.job().encrypted_list())

    def vertical_align(self, other: EncryptedList, mapping: bytes) -> None:
        def align() -> None:
            if len(mapping) % 4:
                raise PermissionDenied(f"party {self.party_id}: the alignment map is not uint32 positions")
            self.job().align(other, np.frombuffer(mapping, dtype="<u4"))

        self._audited("vertical_align", align)

    def _audited(self, event: str, work: Any) -> Any:
        try:
            result = work()
        except CleanroomError as error:
            self.record(event, "refused", job_id=self.job_id, detail=error.public_message())
            raise
        self.record(event, "answered", job_id=self.job_id)
        return result

    # ---- rounds -------------------------------------------------------------------------------------

    def vertical_open(self, request: VerticalRoundRequest, sid: bytes) -> None:
        """Check the round and charge it (dataset, plan, job limits, round number) before any work."""
        existing = self.vsessions.get(sid)
        if existing is not None and existing.request == request:
            return  # a verbatim retry
        try:
            rho = self.check_vertical_round(request, sid)
            reservation = self.reserve(request, rho)  # type: ignore[arg-type]
        except CleanroomError as error:
            self.record_refusal("measure", request, error)  # type: ignore[arg-type]
            raise
        self.record_charge(reservation)
        self.vsessions[sid] = VerticalSession(request, rho)

    def check_vertical_round(self, request: VerticalRoundRequest, sid: bytes) -> float:
        where = self.check_session(request, sid)
        if self.vjob is None or self.vjob.mapping is None:
            raise PreconditionFailed(f"{where}: the job's alignment has not completed")
        unfinished = sum(1 for s in self.vsessions.values() if s.released is None)
        if unfinished >= MAX_VERTICAL_SESSIONS:
            raise PreconditionFailed(f"{where}: {unfinished} sessions are open; finish them first")
        self.check_cliques(request.cliques, where)
        if not MIN_SIGMA_PARTY2 <= request.sigma_party2 <= MAX_SIGMA2:
            raise InvalidInput(
                f"{where}: per-party noise variance {request.sigma_party2} is outside "
                f"[{MIN_SIGMA_PARTY2}, 2^40]"
            )
        return RoundLayout(self.vspec, self.schema.domain, tuple(request.cliques)).rho(request.sigma_party2)

    def vsession(self, sid: bytes) -> VerticalSession:
        state = self.vsessions.get(sid)
        if state is None:
            raise PreconditionFailed(f"party {self.party_id}: no open vertical session {sid.hex()[:16]}...")
        return state

    def vertical_aggregate(self, sid: bytes) -> AggregateReply:
        state = self.vsession(sid)
        if state.aggregate is None:
            state.aggregate = self._charged(state, lambda: self.job().aggregate(state.request, sid))
        return state.aggregate

    def vertical_release(self, sid: bytes, other: AggregateReply) -> np.ndarray:
        state = self.vsession(sid)
        if state.released is None:
            state.released = self._charged(state, lambda: self.job().release(state.request, sid, other))
            request = state.request
            self.ledger.mark_released(request.release_id)
            self.bytes_uploaded += 8 * state.released.size
            self.record(
                "measure", "answered", job_id=request.job_id, round=request.round, cliques=request.cliques,
                statistic="vertical tables", noise_scale=float(request.sigma_party2) ** 0.5,
                rho_charged=state.rho, rho_remaining=float(self.ledger.remaining()),
            )  # fmt: skip
        return state.released

    def _charged(self, state: VerticalSession, work: Any) -> Any:
        """A failure after the charge: one fixed message over the wire, the reason in the local log."""
        try:
            return work()
        except ProtocolAbort as error:
            self.record("measure", "failed", job_id=state.request.job_id, round=state.request.round,
                        detail=str(error))  # fmt: skip
            raise
        except Exception as error:  # noqa: BLE001 - whatever failed, the wire gets the same sentence
            log.error("vertical round %s failed: %s", state.request.round, error)
            failure = ProtocolAbort(
                f"party {self.party_id}, round {state.request.round}: could not compute its part (charged); "
                "the reason is in the party's local log"
            )
            self.record("measure", "failed", job_id=state.request.job_id, round=state.request.round,
                        detail=failure.public_message())  # fmt: skip
            raise failure from None


class KeyPreparation:
    """A background thread generating one Paillier key and up to `count` of its randomizers."""

    def __init__(self, party: str, count: int) -> None:
        self.party, self.count = party, count
        self.key: PaillierPrivate | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="vertical-offline", daemon=True)
        self.thread.start()

    def run(self) -> None:
        started = time.perf_counter()
        self.key = PaillierPrivate.generate()
        self.key.prepare(self.count, self.stop.is_set)
        if not self.stop.is_set():
            log.info("party %s: prepared the next job's Paillier key and %d randomizers in %.1f s",
                     self.party, self.count, time.perf_counter() - started)  # fmt: skip

    def take(self) -> PaillierPrivate:
        self.stop.set()
        self.thread.join()
        return self.key if self.key is not None else PaillierPrivate.generate()


def vertical_spec(plan: Any, schema: Any) -> VerticalSpec:
    return VerticalSpec.from_plan(plan, schema)
