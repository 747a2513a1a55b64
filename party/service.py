"""PartyService servicer: authorise the caller from its certificate, convert, delegate to PartyNode.

No logic lives here: checks are in `party.node.PartyNode`, status mapping in `transport.errors`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from party.node import PartyNode
from transport import serde
from transport.auth import Authorizer, peer_from_context
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc

SERVICE_NAME = "transport.v1.PartyService"
T = TypeVar("T")


class PartyServicer(pb_grpc.PartyServiceServicer):
    def __init__(self, node: PartyNode, authorizer: Authorizer) -> None:
        self.node = node
        self.authorizer = authorizer
        self._lock = threading.Lock()

    async def serial(self, method: Callable[..., T], *args: Any) -> T:
        """Run a node method in a worker thread, one at a time (the node's state is not shared-safe)."""

        def locked() -> T:
            with self._lock:
                return method(*args)

        return await asyncio.to_thread(locked)

    async def Hello(self, request: pb.HelloRequest, context: grpc.aio.ServicerContext) -> pb.HelloResponse:
        self.authorizer.authorize(context, request.coordinator_id, "Hello")
        return serde.hello_reply_to_pb(await self.serial(self.node.hello, serde.hello_from_pb(request)))

    async def AdvertiseKeys(
        self, request: pb.AdvertiseKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdvertiseKeys:
        self.authorizer.authorize(context, request.header.sender, "AdvertiseKeys")
        spec, message = serde.advertise_request_from_pb(request)
        return serde.stage_to_pb(await self.serial(self.node.advertise_keys, spec, message))

    async def ShareKeys(
        self, request: pb.ShareKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShareKeys:
        self.authorizer.authorize(context, request.header.sender, "ShareKeys")
        message = serde.stage_from_pb(request)
        return serde.stage_to_pb(await self.serial(self.node.share_keys, message))

    async def MaskedInput(
        self, request: pb.MaskedInputRequest, context: grpc.aio.ServicerContext
    ) -> pb.MaskedInput:
        self.authorizer.authorize(context, request.header.sender, "MaskedInput")
        message = serde.stage_from_pb(request)
        return serde.stage_to_pb(await self.serial(self.node.masked_input, message))

    async def ConsistencyCheck(
        self, request: pb.ConsistencyCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsistencySignature:
        self.authorizer.authorize(context, request.header.sender, "ConsistencyCheck")
        message = serde.stage_from_pb(request)
        return serde.stage_to_pb(await self.serial(self.node.consistency_check, message))

    async def Unmask(self, request: pb.UnmaskRequest, context: grpc.aio.ServicerContext) -> pb.UnmaskResponse:
        self.authorizer.authorize(context, request.header.sender, "Unmask")
        message = serde.stage_from_pb(request)
        return serde.stage_to_pb(await self.serial(self.node.unmask, message))

    async def DeliverResults(
        self, request_iterator: AsyncIterator[pb.ResultChunk], context: grpc.aio.ServicerContext
    ) -> pb.DeliverResultsResponse:
        self.authorizer.authorize(context, what="DeliverResults")
        return await self._receive(request_iterator, self.node.begin_results, self.node.finish_results)

    async def StageEvaluation(
        self, request_iterator: AsyncIterator[pb.ResultChunk], context: grpc.aio.ServicerContext
    ) -> pb.DeliverResultsResponse:
        """The model and synthetic data, for evaluation only: kept outside the output folder."""
        self.authorizer.authorize(context, what="StageEvaluation")
        return await self._receive(request_iterator, self.node.begin_staging, self.node.finish_staging)

    async def _receive(
        self, request_iterator: AsyncIterator[pb.ResultChunk], begin: Any, finish: Any
    ) -> pb.DeliverResultsResponse:
        """A header chunk (job, files) opens the node's writer; data chunks follow; `finish` checks them."""
        writer, job_id = None, ""
        try:
            async for message in request_iterator:
                if writer is None:
                    job_id, files = serde.result_header_from_pb(message)
                    writer = await self.serial(begin, job_id, files)
                else:
                    writer.write(*serde.chunk_from_pb(message))
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        if writer is None:
            return pb.DeliverResultsResponse()
        written = await asyncio.to_thread(finish, job_id, writer)
        return pb.DeliverResultsResponse(written=written, bytes_written=writer.bytes_written)

    async def Budget(self, request: pb.BudgetRequest, context: grpc.aio.ServicerContext) -> pb.BudgetResponse:
        self.authorizer.authorize(context, what="Budget")
        return serde.budget_to_pb(await self.serial(self.node.budget))

    async def ReadAuditLog(
        self, request: pb.ReadAuditLogRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReadAuditLogResponse:
        """Any plan member holding `read_audit_log` (not only the coordinator): the node decides."""
        peer = peer_from_context(context)
        log, head = await self.serial(self.node.read_audit_log, peer, request.plan_hash)
        return pb.ReadAuditLogResponse(log=log, head=head)


def register(servicer: PartyServicer) -> Callable[[grpc.aio.Server], None]:
    def add(server: grpc.aio.Server) -> None:
        pb_grpc.add_PartyServiceServicer_to_server(servicer, server)

    return add
