"""Client side: mTLS channels to party nodes, health checks and reading a party's audit log.

The channel verifies the server certificate against the collaboration CA and overrides the TLS target name
with the member id, so a connection succeeds only if the server's certificate carries that id as a DNS SAN.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from transport.options import CHANNEL_OPTIONS, HEALTH_DEADLINE_S
from transport.tls import TlsFiles


def secure_channel(address: str, tls: TlsFiles, expected_id: str) -> grpc.aio.Channel:
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", expected_id)]
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=options)


async def check_health(
    channel: grpc.aio.Channel, service: str = "", timeout: float = HEALTH_DEADLINE_S
) -> str:
    """The serving status name (SERVING, NOT_SERVING, ...) of `service` on the channel's server."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def read_audit_log(
    channel: grpc.aio.Channel, party_id: str, plan_hash: str, timeout: float = 30.0
) -> tuple[bytes, bytes]:
    """The party's audit log and head-anchor bytes (empty if none); a refusal raises its domain error."""
    from transport.errors import raise_for_rpc_error
    from transport.v1 import party_pb2, party_pb2_grpc

    stub = party_pb2_grpc.PartyServiceStub(channel)
    try:
        reply = await stub.ReadAuditLog(party_pb2.ReadAuditLogRequest(plan_hash=plan_hash), timeout=timeout)
    except grpc.RpcError as error:
        raise_for_rpc_error(error, party_id, "ReadAuditLog")
        raise
    return bytes(reply.log), bytes(reply.head)


async def wait_healthy(
    address: str, tls: TlsFiles, expected_id: str, service: str, attempts: int = 100
) -> None:
    """Poll until the node answers SERVING (raises the last error after `attempts` tries, 0.1 s apart)."""
    import asyncio

    last: Exception | None = None
    async with secure_channel(address, tls, expected_id) as channel:
        for _ in range(attempts):
            try:
                if await check_health(channel, service, timeout=2.0) == "SERVING":
                    return
            except grpc.RpcError as error:
                last = error
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{expected_id} at {address} did not become healthy: {last}")


def server_cert_sha256(
    address: str, tls: TlsFiles, expected_id: str, timeout: float = HEALTH_DEADLINE_S
) -> str:
    """SHA-256 (hex, of the DER) of the certificate a node presents, fetched over a separate mTLS handshake.

    gRPC's Python client does not expose the server certificate of a call, so the coordinator checks the
    plan's pinned `cert_sha256` with this pre-flight handshake (same CA and client certificate, hostname =
    member id). It is a check of the node's configured certificate, not of every later connection.
    """
    import hashlib
    import socket
    import ssl

    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=expected_id) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    if der is None:
        raise ConnectionError(f"{expected_id} at {address} presented no certificate")
    return hashlib.sha256(der).hexdigest()
