"""Mutual TLS, peer authorisation and status mapping on a real grpc.aio server over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from cleanroom.errors import BudgetExceeded
from party.service import SERVICE_NAME, PartyServicer, register
from transport import wire
from transport.auth import Authorizer
from transport.ca import init_ca, issue
from transport.channel import check_health, secure_channel
from transport.server import start_server
from transport.tls import TlsFiles
from transport.v1 import party_pb2 as pb
from transport.v1 import party_pb2_grpc as pb_grpc


class FakeNode:
    """Stands in for PartyNode: records calls; what it raises is set by the test."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_with: Exception | None = None

    def hello(self, msg: wire.Hello) -> wire.HelloReply:
        self.calls.append(msg.job_id)
        if self.fail_with is not None:
            raise self.fail_with
        return wire.HelloReply("airline", True, msg.schema_hash, "test", 1.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("pki")
    good, foreign = root / "good", root / "foreign"
    init_ca(good)
    init_ca(foreign)
    issue(good, "airline")
    issue(good, "hotel")
    issue(good, "coordinator", role="coordinator")
    issue(foreign, "coordinator", role="coordinator")

    def tls(ca_dir: Path, name: str) -> TlsFiles:
        return TlsFiles(good / "ca.pem", ca_dir / f"{name}.pem", ca_dir / f"{name}.key")

    return SimpleNamespace(good=good, foreign=foreign, tls=tls)


@pytest.fixture
async def node_server(pki: SimpleNamespace):  # type: ignore[no-untyped-def]
    node = FakeNode()
    servicer = PartyServicer(node, Authorizer("coordinator"))  # type: ignore[arg-type]
    server = await start_server(
        "127.0.0.1:0", pki.tls(pki.good, "airline"), register(servicer), (SERVICE_NAME,)
    )
    yield SimpleNamespace(node=node, server=server, address=f"127.0.0.1:{server.port}")
    await server.server.stop(None)


async def _hello(
    address: str, tls: TlsFiles, claimed: str = "coordinator", job_id: str = "j1"
) -> pb.HelloResponse:
    async with secure_channel(address, tls, "airline") as channel:
        stub = pb_grpc.PartyServiceStub(channel)
        return await stub.Hello(pb.HelloRequest(job_id=job_id, coordinator_id=claimed), timeout=10)


async def test_coordinator_with_valid_certificate_is_served(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    reply = await _hello(node_server.address, pki.tls(pki.good, "coordinator"))
    assert reply.party_id == "airline"
    assert node_server.node.calls == ["j1"]


async def test_certificate_from_another_ca_is_refused(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _hello(node_server.address, pki.tls(pki.foreign, "coordinator"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert node_server.node.calls == []


async def test_party_certificate_claiming_to_be_the_coordinator_is_refused(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _hello(node_server.address, pki.tls(pki.good, "hotel"), claimed="coordinator")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'hotel'" in (info.value.details() or "")
    assert node_server.node.calls == []


async def test_valid_certificate_claiming_another_identity_is_refused(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _hello(node_server.address, pki.tls(pki.good, "coordinator"), claimed="hotel")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert node_server.node.calls == []


async def test_non_coordinator_without_claim_is_refused(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _hello(node_server.address, pki.tls(pki.good, "hotel"), claimed="")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_domain_error_maps_to_its_status(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    node_server.node.fail_with = BudgetExceeded("party airline: spent 1 + requested 2 > total 2")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _hello(node_server.address, pki.tls(pki.good, "coordinator"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requested 2" in (info.value.details() or "")


async def test_unexpected_error_is_internal_without_its_text(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    node_server.node.fail_with = ValueError("row 17 has salary 123456")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _hello(node_server.address, pki.tls(pki.good, "coordinator"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "123456" not in (info.value.details() or "")


async def test_shutdown_goes_not_serving_before_stopping(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    tls = pki.tls(pki.good, "coordinator")
    async with secure_channel(node_server.address, tls, "airline") as channel:
        assert await check_health(channel, SERVICE_NAME) == "SERVING"
        seen: list[str] = []
        real_stop = node_server.server.server.stop

        async def observing_stop(grace: float | None) -> None:
            seen.append(await check_health(channel, SERVICE_NAME))
            await real_stop(grace)

        node_server.server.server.stop = observing_stop
        await node_server.server.shutdown(grace=0.5)
        node_server.server.server.stop = real_stop
        assert seen == ["NOT_SERVING"]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.PartyServiceStub(channel).Hello(
                pb.HelloRequest(coordinator_id="coordinator"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_message_over_the_size_limit_is_refused_and_the_server_stays_healthy(pki) -> None:  # type: ignore[no-untyped-def]
    node = FakeNode()
    servicer = PartyServicer(node, Authorizer("coordinator"))  # type: ignore[arg-type]
    tls = pki.tls(pki.good, "airline")
    server = await start_server(
        "127.0.0.1:0", tls, register(servicer), (SERVICE_NAME,), max_message_bytes=4096
    )
    address = f"127.0.0.1:{server.port}"
    try:
        client = pki.tls(pki.good, "coordinator")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _hello(address, client, claimed="coordinator", job_id="x" * 8192)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert node.calls == []
        async with secure_channel(address, client, "airline") as channel:
            assert await check_health(channel, SERVICE_NAME) == "SERVING"
        assert (await _hello(address, client)).party_id == "airline"
    finally:
        await server.server.stop(None)


async def test_coordinator_refuses_a_node_whose_certificate_is_not_the_pinned_one(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from cleanroom.errors import PermissionDenied
    from coordinator.client import PartyClient
    from transport.errors import RemoteError

    der = x509.load_pem_x509_certificate((pki.good / "airline.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    client = PartyClient("airline", node_server.address, pki.tls(pki.good, "coordinator"), 10.0)
    try:
        await client.verify_pin(hashlib.sha256(der).hexdigest())
        with pytest.raises(PermissionDenied, match="pins"):
            await client.verify_pin("0" * 64)
    finally:
        await client.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    gone = PartyClient("airline", closed, pki.tls(pki.good, "coordinator"), 10.0)
    try:
        with pytest.raises(RemoteError, match="UNAVAILABLE"):
            await gone.verify_pin("0" * 64)
    finally:
        await gone.close()


async def test_client_without_certificate_is_refused(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    credentials = grpc.ssl_channel_credentials(root_certificates=(pki.good / "ca.pem").read_bytes())
    options = [("grpc.ssl_target_name_override", "airline")]
    async with grpc.aio.secure_channel(node_server.address, credentials, options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.PartyServiceStub(channel).Hello(
                pb.HelloRequest(coordinator_id="coordinator"), timeout=10
            )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert node_server.node.calls == []


async def test_expired_certificate_is_refused(node_server, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copyfile(pki.good / "ca.pem", tmp_path / "ca.pem")
    shutil.copyfile(pki.good / "ca.key", tmp_path / "ca.key")
    issue(tmp_path, "coordinator", role="coordinator", days=0)  # valid until the moment it was issued
    await asyncio.sleep(1.1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _hello(
            node_server.address,
            TlsFiles(pki.good / "ca.pem", tmp_path / "coordinator.pem", tmp_path / "coordinator.key"),
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert node_server.node.calls == []


async def test_a_second_server_cannot_share_the_port(node_server, pki) -> None:  # type: ignore[no-untyped-def]
    """No SO_REUSEPORT: another process binding a party's port fails instead of taking half its calls."""
    with pytest.raises(OSError, match="cannot listen on .*the port is in use"):
        await start_server(
            node_server.address, pki.tls(pki.good, "hotel"), lambda server: None, (SERVICE_NAME,)
        )
