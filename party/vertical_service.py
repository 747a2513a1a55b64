"""VerticalService servicer: authorise the caller (the plan's coordinator, by certificate), convert,
delegate to `party.vertical.VerticalPartyNode`. No logic lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np

from party.service import PartyServicer
from party.vertical import VerticalPartyNode
from transport import vertical_serde as serde
from transport.auth import Authorizer
from transport.v1 import vertical_pb2 as pb
from transport.v1 import vertical_pb2_grpc as pb_grpc

SERVICE_NAME = "transport.v1.VerticalService"
MAX_LIST_BYTES = 1 << 31  # an encrypted list: entries x ciphertexts x 512 bytes, within the plan's bounds


class VerticalServicer(pb_grpc.VerticalServiceServicer):
    def __init__(self, node: VerticalPartyNode, authorizer: Authorizer, party: PartyServicer) -> None:
        self.node = node
        self.authorizer = authorizer
        self.serial = party.serial  # one lock for both services: the node's state is not shared-safe

    def _authorize(self, context: Any, header: Any, what: str) -> None:
        self.authorizer.authorize(context, header.sender, what)

    async def Setup(self, request: pb.VerticalSetupRequest, context: grpc.aio.ServicerContext) -> Any:
        self._authorize(context, request.header, "Setup")
        return serde.setup_to_pb(await self.serial(self.node.vertical_setup, request.header.job_id))

    async def Blind(self, request: pb.VerticalBlindRequest, context: grpc.aio.ServicerContext) -> Any:
        self._authorize(context, request.header, "Blind")
        reply = await self.serial(self.node.vertical_blind, serde.setup_from_pb(request.other))
        return serde.blind_to_pb(reply)

    async def EncryptedList(
        self, request: pb.VerticalListRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.VerticalListChunk]:
        self._authorize(context, request.header, "EncryptedList")
        listing = await self.serial(self.node.vertical_list)
        for chunk in serde.list_chunks(listing, "EncryptedList"):
            yield chunk

    async def Align(
        self, request_iterator: AsyncIterator[pb.VerticalListChunk], context: grpc.aio.ServicerContext
    ) -> pb.VerticalAck:
        self.authorizer.authorize(context, what="Align")
        listing, mapping = await serde.list_from_chunks(request_iterator, "Align", MAX_LIST_BYTES)
        await self.serial(self.node.vertical_align, listing, mapping)
        return pb.VerticalAck(header=serde.header(listing.sid, "Align", self.node.party_id))

    async def OpenRound(self, request: pb.VerticalOpenRound, context: grpc.aio.ServicerContext) -> Any:
        self._authorize(context, request.header, "OpenRound")
        spec = serde.round_from_pb(request.spec)
        await self.serial(self.node.vertical_open, spec, request.header.sid)
        return pb.VerticalAck(header=serde.header(request.header.sid, "OpenRound", self.node.party_id))

    async def Aggregate(self, request: pb.VerticalAggregateRequest, context: grpc.aio.ServicerContext) -> Any:
        self._authorize(context, request.header, "Aggregate")
        reply = await self.serial(self.node.vertical_aggregate, request.header.sid)
        return serde.aggregate_to_pb(reply)

    async def Release(
        self, request_iterator: AsyncIterator[pb.VerticalReleaseChunk], context: grpc.aio.ServicerContext
    ) -> pb.VerticalReleaseReply:
        self.authorizer.authorize(context, what="Release")
        _, other = await serde.release_from_chunks(request_iterator, MAX_LIST_BYTES)
        vector = await self.serial(self.node.vertical_release, other.sid, other)
        data = np.asarray(vector, dtype="<i8").tobytes()
        return pb.VerticalReleaseReply(
            header=serde.header(other.sid, "Release", self.node.party_id), vector=data
        )


def register_both(party: Any, vertical: VerticalServicer) -> Callable[[grpc.aio.Server], None]:
    from transport.v1 import party_pb2_grpc

    def add(server: grpc.aio.Server) -> None:
        party_pb2_grpc.add_PartyServiceServicer_to_server(party, server)
        pb_grpc.add_VerticalServiceServicer_to_server(vertical, server)

    return add
