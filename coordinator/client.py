"""A typed client for one party node: a deadline on every call, statuses as domain errors, byte counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from cleanroom.errors import InvalidInput
from transport import serde, wire
from transport.channel import secure_channel
from transport.errors import raise_for_rpc_error
from transport.options import CHUNK_BYTES
from transport.tls import TlsFiles
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc


@dataclass
class PartyClient:
    party_id: str
    address: str
    tls: TlsFiles
    deadline_s: float
    bytes_received: int = 0  # everything this party uploaded to the coordinator (response payloads)
    vector_bytes: int = 0  # of which masked vectors
    _channel: grpc.aio.Channel | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._channel = secure_channel(self.address, self.tls, self.party_id)
        self.stub = pb_grpc.PartyServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        try:
            response = await getattr(self.stub, method)(request, timeout=self.deadline_s)
        except grpc.RpcError as error:
            raise_for_rpc_error(error, f"party {self.party_id} ({self.address})", method)
        self.bytes_received += response.ByteSize()
        return response

    async def hello(self, msg: wire.Hello) -> wire.HelloReply:
        return serde.hello_reply_from_pb(await self._call("Hello", serde.hello_to_pb(msg)))

    async def advertise_keys(self, spec: wire.RoundRequest) -> wire.AdvertisedKeys:
        response = await self._call("AdvertiseKeys", pb.AdvertiseKeysRequest(spec=serde.round_to_pb(spec)))
        return serde.keys_from_pb(response.keys)

    async def share_keys(self, sid: bytes, roster: list[wire.AdvertisedKeys]) -> list[wire.EncryptedShare]:
        request = pb.ShareKeysRequest(sid=sid, roster=[serde.keys_to_pb(k) for k in roster])
        return [serde.share_from_pb(s) for s in (await self._call("ShareKeys", request)).shares]

    async def masked_input(self, sid: bytes, shares: list[wire.EncryptedShare], length: int) -> np.ndarray:
        request = pb.MaskedInputRequest(sid=sid, shares=[serde.share_to_pb(s) for s in shares])
        response = await self._call("MaskedInput", request)
        if response.length != length:
            raise InvalidInput(
                f"party {self.party_id}: masked vector has {response.length} cells, expected {length}"
            )
        self.vector_bytes += len(response.masked_vector)
        return serde.unpack_vector(response.masked_vector, length, f"party {self.party_id} MaskedInput")

    async def consistency_check(self, sid: bytes, survivors: tuple[str, ...]) -> bytes:
        request = pb.ConsistencyCheckRequest(sid=sid, survivors=list(survivors))
        return bytes((await self._call("ConsistencyCheck", request)).signature)

    async def unmask(
        self, sid: bytes, survivors: tuple[str, ...], sigs: list[wire.PartySignature]
    ) -> wire.UnmaskShares:
        request = pb.UnmaskRequest(
            sid=sid, survivors=list(survivors), signatures=[serde.signature_to_pb(s) for s in sigs]
        )
        return serde.unmask_from_pb(await self._call("Unmask", request))

    async def budget(self) -> wire.BudgetStatus:
        return serde.budget_from_pb(await self._call("Budget", pb.BudgetRequest()))

    async def deliver(self, job_id: str, files: dict[str, Path]) -> list[str]:
        metas = [wire.ResultFile(name, p.stat().st_size, _sha256(p)) for name, p in files.items()]

        async def stream() -> AsyncIterator[pb.ResultChunk]:
            yield serde.result_header_to_pb(job_id, metas)
            for name, path in files.items():
                data = path.read_bytes()
                for offset in range(0, len(data), CHUNK_BYTES):
                    yield serde.chunk_to_pb(name, offset, data[offset : offset + CHUNK_BYTES])

        try:
            response = await self.stub.DeliverResults(stream(), timeout=self.deadline_s)
        except grpc.RpcError as error:
            raise_for_rpc_error(error, f"party {self.party_id} ({self.address})", "DeliverResults")
        return list(response.written)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
