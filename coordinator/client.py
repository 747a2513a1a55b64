"""A typed client for one party node: a deadline on every call, statuses as domain errors, byte counts."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cleanroom.errors import PermissionDenied
from transport import serde, wire
from transport.channel import secure_channel, server_cert_sha256
from transport.errors import RemoteError, raise_for_rpc_error
from transport.options import CHUNK_BYTES
from transport.tls import TlsFiles
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc

RETRIES = 2
RETRY_PAUSE_S = 0.25


@dataclass
class PartyClient:
    party_id: str
    address: str
    tls: TlsFiles
    deadline_s: float
    bytes_sent: int = 0  # request payloads sent to this party
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
        """Unary call with a deadline; a transient UNAVAILABLE is retried RETRIES times.

        Every unary RPC is idempotent per (sid, stage, party): a party answers a verbatim repeat with the
        identical response (no fresh noise, no second charge).
        """
        for attempt in range(RETRIES + 1):
            try:
                response = await getattr(self.stub, method)(request, timeout=self.deadline_s)
                break
            except grpc.RpcError as error:
                transient = error.code() == grpc.StatusCode.UNAVAILABLE
                if transient and attempt < RETRIES:
                    await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
                    continue
                raise_for_rpc_error(error, f"party {self.party_id} ({self.address})", method)
        self.bytes_sent += request.ByteSize()
        self.bytes_received += response.ByteSize()
        return response

    async def verify_pin(self, pinned_sha256: str) -> None:
        """Refuse a node whose certificate is not the one the plan pins for this member."""
        try:
            actual = await asyncio.to_thread(server_cert_sha256, self.address, self.tls, self.party_id)
        except (OSError, ssl.SSLError) as error:
            status = grpc.StatusCode.UNAVAILABLE
            raise RemoteError(
                f"party {self.party_id} ({self.address})", "TLS handshake", status, str(error)
            ) from None
        if actual != pinned_sha256.lower():
            raise PermissionDenied(
                f"party {self.party_id} ({self.address}) presents certificate {actual[:16]}..., "
                f"the plan pins {pinned_sha256[:16]}..."
            )

    async def hello(self, msg: wire.Hello) -> wire.HelloReply:
        return serde.hello_reply_from_pb(await self._call("Hello", serde.hello_to_pb(msg)))

    async def stage(self, name: str, request: Any, spec: wire.RoundRequest) -> Any:
        """One secure-aggregation stage call: a `cleanroom.secagg.messages` request in, its response out."""
        if name == "AdvertiseKeys":
            message = serde.advertise_request_to_pb(spec, request)
        else:
            message = serde.stage_to_pb(request)
        response = serde.stage_from_pb(await self._call(name, message))
        if name == "MaskedInput":
            self.vector_bytes += len(response.vector)
        return response

    async def budget(self) -> wire.BudgetStatus:
        return serde.budget_from_pb(await self._call("Budget", pb.BudgetRequest()))

    async def deliver(
        self,
        job_id: str,
        files: dict[str, Path],
        metas: dict[str, wire.ResultFile] | None = None,
        held: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Send the results; files in `held` are announced but not sent: the party holds them staged (same
        digest) and copies its own copy (party.node.PartyNode.adopt_staged)."""
        return await self._send_files("DeliverResults", job_id, files, metas, held)

    async def stage_for_evaluation(
        self, job_id: str, files: dict[str, Path], metas: dict[str, wire.ResultFile] | None = None
    ) -> list[str]:
        """Upload the model and synthetic data for the party's evaluation only (not a release)."""
        return await self._send_files("StageEvaluation", job_id, files, metas)

    async def _send_files(
        self,
        method: str,
        job_id: str,
        files: dict[str, Path],
        known: dict[str, wire.ResultFile] | None,
        held: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Stream `files` in CHUNK_BYTES chunks read from disk as they are sent (one chunk in memory per
        call, whatever the number of parties). `known`: the files' metadata, computed once for all parties
        (`file_metas`); a file changed since fails the party's size or digest check."""
        known = known or file_metas(files)
        metas = [known[name] for name in files]
        try:
            response = await getattr(self.stub, method)(
                result_stream(job_id, files, metas, held), timeout=self.deadline_s
            )
        except grpc.RpcError as error:
            raise_for_rpc_error(error, f"party {self.party_id} ({self.address})", method)
        self.bytes_sent += sum(m.size for m in metas if m.name not in held)
        return list(response.written)


async def result_stream(
    job_id: str, files: dict[str, Path], metas: list[wire.ResultFile], held: frozenset[str] = frozenset()
) -> AsyncIterator[pb.ResultChunk]:
    """The header (every file), then each file not `held` by the party in CHUNK_BYTES chunks."""
    yield serde.result_header_to_pb(job_id, metas)
    for name, path in files.items():
        if name in held:
            continue
        with path.open("rb") as handle:
            offset = 0
            while chunk := handle.read(CHUNK_BYTES):
                yield serde.chunk_to_pb(name, offset, chunk)
                offset += len(chunk)


def file_metas(files: dict[str, Path]) -> dict[str, wire.ResultFile]:
    """Name, size and SHA-256 of each file, read in chunks (hash once, send to every party)."""
    metas = {}
    for name, path in files.items():
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        metas[name] = wire.ResultFile(name, size, digest.hexdigest())
    return metas
