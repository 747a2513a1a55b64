"""The coordinator's job for a vertical plan: handshake -> PSI and alignment -> MST rounds on the joined rows
-> fit -> sample -> train -> deliver (docs/vertical.md).

It relays every party-to-party payload (signed by the sender) and keeps only what it needs: the
doubly-blinded lists (to match), the parties' list positions (to build the maps) and the released noisy
tables. No evaluation rounds run: no party holds every column, so the model cannot be scored on real joined
rows and the membership-inference gate cannot be computed; the report says so.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from cleanroom.errors import CleanroomError
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.secagg.manifest import session_id
from cleanroom.synth import make_planner
from cleanroom.vertical import coordinator as vc
from cleanroom.vertical.layout import RoundLayout
from cleanroom.vertical.messages import (
    AggregateReply,
    EncryptedList,
    SetupReply,
    VerticalRoundRequest,
    setup_sid,
)
from cleanroom.vertical.spec import VerticalSpec
from coordinator.client import PartyClient
from coordinator.results import build_results
from coordinator.workflow import Workflow, progress
from transport import vertical_serde as serde
from transport.errors import raise_for_rpc_error
from transport.v1 import vertical_pb2 as pb
from transport.v1 import vertical_pb2_grpc as pb_grpc

LIST_DEADLINE_S = 3600.0  # encrypting a list of max_rows x 2 entries takes minutes on a loaded machine
JOB_RHO_RESERVE = 1e-6  # share of the job's rho left for the extra tables (about 5e-13 each)
SKIPPED = (
    "vertical plan: no evaluation rounds (no party holds every column, so the model cannot be scored on "
    "real joined rows and the membership-inference gate cannot be computed); the DP guarantee is what "
    "protects the records"
)


@dataclass
class VerticalClient:
    """The VerticalService calls to one party over the PartyClient's mTLS channel, with byte counts."""

    client: PartyClient
    deadline_s: float
    sent: dict[str, int] = field(default_factory=lambda: {"psi": 0, "tables": 0})
    received: dict[str, int] = field(default_factory=lambda: {"psi": 0, "tables": 0})

    def __post_init__(self) -> None:
        self.channel = long_call_channel(self.client)
        self.stub = pb_grpc.VerticalServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    @property
    def name(self) -> str:
        return f"party {self.client.party_id} ({self.client.address})"

    async def unary(self, method: str, request: Any, kind: str, deadline: float | None = None) -> Any:
        try:
            response = await getattr(self.stub, method)(request, timeout=deadline or self.deadline_s)
        except grpc.RpcError as error:
            raise_for_rpc_error(error, self.name, method)
        self.sent[kind] += request.ByteSize()
        self.received[kind] += response.ByteSize()
        return response

    async def setup(self, sid: bytes, job_id: str) -> SetupReply:
        request = pb.VerticalSetupRequest(header=serde.header(sid, "Setup", "coordinator", job_id))
        return serde.setup_from_pb(await self.unary("Setup", request, "psi", LIST_DEADLINE_S))

    async def blind(self, sid: bytes, other: SetupReply) -> Any:
        request = pb.VerticalBlindRequest(header=serde.header(sid, "Blind", "coordinator"),
                                          other=serde.setup_to_pb(other))  # fmt: skip
        return serde.blind_from_pb(await self.unary("Blind", request, "psi", LIST_DEADLINE_S))

    async def encrypted_list(self, sid: bytes) -> EncryptedList:
        request = pb.VerticalListRequest(header=serde.header(sid, "EncryptedList", "coordinator"))
        try:
            stream = self.stub.EncryptedList(request, timeout=LIST_DEADLINE_S)
            listing, _ = await serde.list_from_chunks(self._counted(stream), "EncryptedList", 1 << 33)
        except grpc.RpcError as error:
            raise_for_rpc_error(error, self.name, "EncryptedList")
        return listing

    async def _counted(self, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for chunk in stream:
            self.received["tables"] += chunk.ByteSize()
            yield chunk

    async def align(self, listing: EncryptedList, mapping: bytes) -> None:
        chunks = list(serde.list_chunks(listing, "Align", mapping))
        self.sent["tables"] += sum(c.ByteSize() for c in chunks)
        try:
            await self.stub.Align(iter(chunks), timeout=LIST_DEADLINE_S)
        except grpc.RpcError as error:
            raise_for_rpc_error(error, self.name, "Align")

    async def open_round(self, sid: bytes, request: VerticalRoundRequest) -> None:
        message = pb.VerticalOpenRound(header=serde.header(sid, "OpenRound", "coordinator"),
                                       spec=serde.round_to_pb(request))  # fmt: skip
        await self.unary("OpenRound", message, "tables")

    async def aggregate(self, sid: bytes) -> AggregateReply:
        message = pb.VerticalAggregateRequest(header=serde.header(sid, "Aggregate", "coordinator"))
        return serde.aggregate_from_pb(await self.unary("Aggregate", message, "tables", LIST_DEADLINE_S))

    async def release(self, sid: bytes, other: AggregateReply) -> np.ndarray:
        chunks = list(serde.release_chunks(sid, "coordinator", other))
        self.sent["tables"] += sum(c.ByteSize() for c in chunks)
        try:
            reply = await self.stub.Release(iter(chunks), timeout=LIST_DEADLINE_S)
        except grpc.RpcError as error:
            raise_for_rpc_error(error, self.name, "Release")
        self.received["tables"] += reply.ByteSize()
        return np.frombuffer(reply.vector, dtype="<i8").astype(np.int64)


def long_call_channel(client: PartyClient) -> grpc.aio.Channel:
    """A second mTLS channel to the party without client keepalive pings.

    Vertical calls (encrypting a list, aggregating a round) can run for minutes while the party's event loop
    competes with its compute thread; pings answered late come in bursts that the server counts as abuse
    (GOAWAY too_many_pings, `transport.options`). Deadlines still bound every call.
    """
    from transport.options import CHANNEL_OPTIONS

    options = [(k, v) for k, v in CHANNEL_OPTIONS if not k.startswith("grpc.keepalive")]
    options += [("grpc.keepalive_time_ms", 2**31 - 1), ("grpc.keepalive_permit_without_calls", 0),
                ("grpc.ssl_target_name_override", client.party_id)]  # fmt: skip
    return grpc.aio.secure_channel(client.address, client.tls.channel_credentials(), options=options)


class VerticalWorkflow(Workflow):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.spec = VerticalSpec.from_plan(self.plan, config.schema)
        self.vclients = {p: VerticalClient(c, config.call_deadline_s) for p, c in self.clients.items()}
        self.intersection = 0

    async def steps(self) -> None:
        """Handshake, PSI and alignment, cross-table rounds, fit, results, delivery (no evaluation)."""
        await self.timed("handshake", self.handshake())
        await self.timed("psi_align", self.align())
        measurements = await self.measure()
        assert self.planner is not None
        model = await self.timed("fit", asyncio.to_thread(self.planner.estimate, measurements))
        results = await self.timed(
            "results",
            asyncio.to_thread(build_results, self.config, model, measurements, self.record, self.rng),
        )
        self.annotate(results["report.json"])
        await self.finish_delivery(results)

    async def close(self) -> None:
        await super().close()
        for vclient in self.vclients.values():
            await vclient.close()

    async def both(self, calls: dict[str, Any], stage: str) -> dict[str, Any]:
        self.last_errors: dict[str, CleanroomError] = {}
        return await self.gather(calls, stage, len(self.spec.parties))

    async def align(self) -> None:
        """PSI through the coordinator, encrypted lists, and each party's checked alignment map."""
        sid = setup_sid(self.plan.collaboration_id, self.config.plan_hash, self.record.job_id)
        job, parties, other = self.record.job_id, self.spec.parties, self.spec.other
        setups = await self.both({p: self.vclients[p].setup(sid, job) for p in parties}, "vertical setup")
        blinds = await self.both({p: self.vclients[p].blind(sid, setups[other(p)]) for p in parties}, "PSI")
        lists = await self.both({p: self.vclients[p].encrypted_list(sid) for p in parties}, "encrypted list")
        alignment = vc.align(self.spec, blinds, lists)
        self.intersection = alignment.intersection
        calls = {
            p: self.vclients[p].align(
                vc.peer_copy(lists[other(p)]), alignment.maps[p].astype("<u4").tobytes()
            )
            for p in parties
        }
        await self.both(calls, "alignment")
        progress(
            f"alignment: {len(parties)} parties aligned (lists of {[lists[p].entries for p in parties]})"
        )

    async def measure(self) -> list[Measurement]:
        settings = dict(self.plan.synthesizer_settings)
        rho_total = self.job_rho() * (1 - JOB_RHO_RESERVE)  # no evaluation rounds: the job's whole budget
        self.planner = planner = make_planner(
            "mst", self.config.schema, rho_total, n_min=1, n_parties=1, settings=settings
        )  # the schema's reserved levels and ordinal columns guide the domain compression
        return await self.run_rounds(planner, self.vertical_round)

    async def vertical_round(self, number: int, spec: RoundSpec) -> list[Measurement]:
        domain = self.config.schema.domain
        cliques = tuple(domain.canonical(c) for c in spec.cliques)
        sigma2 = Fraction(spec.sigma_total2)  # each party's share alone carries the round's guarantee
        job = self.record.job_id
        request = VerticalRoundRequest(job, f"{job}/{number}", number, cliques, sigma2)
        sid = session_id(self.plan.collaboration_id, number, self.config.plan_hash, request.digest())
        parties, other = self.spec.parties, self.spec.other
        await self.both({p: self.vclients[p].open_round(sid, request) for p in parties}, "open round")
        aggregates = await self.both({p: self.vclients[p].aggregate(sid) for p in parties}, "aggregate")
        released = await self.both(
            {p: self.vclients[p].release(sid, aggregates[other(p)]) for p in parties}, "release"
        )
        tables = vc.assemble(self.spec, domain, cliques, released)
        rho = RoundLayout(self.spec, domain, cliques).rho(sigma2)
        self.record.rho_spent += rho
        cells = sum(t.size for t in tables)
        self.record.rounds.append(
            {"round": number, "name": spec.name, "cliques": len(cliques), "cells": cells,
             "survivors": list(parties), "rho": rho, "sigma_party2": str(sigma2)}
        )  # fmt: skip
        progress(f"round {number} ({spec.name}): {len(cliques)} tables on the joined rows, {cells} cells")
        stddev = math.sqrt(2 * float(sigma2))  # both parties' shares
        return [Measurement(c, t.astype(float), stddev) for c, t in zip(cliques, tables, strict=True)]

    def annotate(self, path: Path) -> None:
        report = json.loads(path.read_text())
        report["partitioning"] = "vertical"
        report["evaluation"] = {"skipped": SKIPPED}
        report["released"] = True
        path.write_text(json.dumps(report, indent=2, allow_nan=False))

    def write_record(self) -> None:
        super().write_record()
        path = self.config.out / "job.json"
        data = json.loads(path.read_text())
        data["vertical"] = {
            "intersection_size": self.intersection,  # the coordinator's own record: never sent to a party
            "bytes": {p: {"sent_to_party": {**c.sent, "rest": self.clients[p].bytes_sent},
                          "received_from_party": {**c.received, "rest": self.clients[p].bytes_received}}
                      for p, c in self.vclients.items()},
        }  # fmt: skip
        path.write_text(json.dumps(data, indent=2))
