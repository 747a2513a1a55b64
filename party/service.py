"""PartyService servicer: authorise the caller from its certificate, convert, delegate to PartyNode.

No logic lives here: checks are in `party.node.PartyNode`, status mapping in `transport.errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc

from party.node import PartyNode
from transport import serde
from transport.auth import Authorizer
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc

SERVICE_NAME = "transport.v1.PartyService"


class PartyServicer(pb_grpc.PartyServiceServicer):
    def __init__(self, node: PartyNode, authorizer: Authorizer) -> None:
        self.node = node
        self.authorizer = authorizer

    async def Hello(self, request: pb.HelloRequest, context: grpc.aio.ServicerContext) -> pb.HelloResponse:
        self.authorizer.authorize(context, request.coordinator_id, "Hello")
        return serde.hello_reply_to_pb(self.node.hello(serde.hello_from_pb(request)))

    async def AdvertiseKeys(
        self, request: pb.AdvertiseKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdvertiseKeysResponse:
        self.authorizer.authorize(context, what="AdvertiseKeys")
        keys = self.node.advertise_keys(serde.round_from_pb(request.spec))
        return pb.AdvertiseKeysResponse(keys=serde.keys_to_pb(keys))

    async def ShareKeys(
        self, request: pb.ShareKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShareKeysResponse:
        self.authorizer.authorize(context, what="ShareKeys")
        roster = [serde.keys_from_pb(k) for k in request.roster]
        shares = self.node.share_keys(request.sid, roster)
        return pb.ShareKeysResponse(shares=[serde.share_to_pb(s) for s in shares])

    async def MaskedInput(
        self, request: pb.MaskedInputRequest, context: grpc.aio.ServicerContext
    ) -> pb.MaskedInputResponse:
        self.authorizer.authorize(context, what="MaskedInput")
        shares = [serde.share_from_pb(s) for s in request.shares]
        vector = await asyncio.to_thread(self.node.masked_input, request.sid, shares)
        return pb.MaskedInputResponse(masked_vector=serde.pack_vector(vector), length=len(vector))

    async def ConsistencyCheck(
        self, request: pb.ConsistencyCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsistencyCheckResponse:
        self.authorizer.authorize(context, what="ConsistencyCheck")
        signature = self.node.consistency_check(request.sid, tuple(request.survivors))
        return pb.ConsistencyCheckResponse(signature=signature)

    async def Unmask(self, request: pb.UnmaskRequest, context: grpc.aio.ServicerContext) -> pb.UnmaskResponse:
        self.authorizer.authorize(context, what="Unmask")
        signatures = [serde.signature_from_pb(s) for s in request.signatures]
        return serde.unmask_to_pb(self.node.unmask(request.sid, tuple(request.survivors), signatures))

    async def DeliverResults(
        self, request_iterator: AsyncIterator[pb.ResultChunk], context: grpc.aio.ServicerContext
    ) -> pb.DeliverResultsResponse:
        self.authorizer.authorize(context, what="DeliverResults")
        writer = None
        async for message in request_iterator:
            if writer is None:
                writer = self.node.begin_results(*serde.result_header_from_pb(message))
            else:
                writer.write(*serde.chunk_from_pb(message))
        if writer is None:
            return pb.DeliverResultsResponse()
        written = await asyncio.to_thread(writer.finish)
        return pb.DeliverResultsResponse(written=written, bytes_written=writer.bytes_written)

    async def Budget(self, request: pb.BudgetRequest, context: grpc.aio.ServicerContext) -> pb.BudgetResponse:
        self.authorizer.authorize(context, what="Budget")
        return serde.budget_to_pb(self.node.budget())


def register(servicer: PartyServicer) -> Callable[[grpc.aio.Server], None]:
    def add(server: grpc.aio.Server) -> None:
        pb_grpc.add_PartyServiceServicer_to_server(servicer, server)

    return add
