"""A grpc.aio server with mutual TLS, explicit limits, the error interceptor, health, and graceful shutdown.

On SIGTERM/SIGINT the health status of every service goes NOT_SERVING first, then `server.stop(grace)` lets
in-flight calls finish while new calls get UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from transport.errors import ErrorInterceptor
from transport.options import MAX_MESSAGE_BYTES, SERVER_OPTIONS
from transport.tls import TlsFiles

log = logging.getLogger("cleanroom.transport")

Registrar = Callable[[grpc.aio.Server], None]


@dataclass
class NodeServer:
    """A running server: the grpc.aio server, its health servicer and the bound port."""

    server: grpc.aio.Server
    health: HealthServicer
    port: int
    service_names: tuple[str, ...]
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def shutdown(self, grace: float = 5.0) -> None:
        """NOT_SERVING first (health checks and balancers stop sending), then stop with a grace period."""
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        self.stopped.set()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def start_server(
    address: str,
    tls: TlsFiles,
    register: Registrar,
    service_names: tuple[str, ...],
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_receive_bytes: int | None = None,
) -> NodeServer:
    """Bind `address` (host:port, port 0 = ephemeral) with mTLS and start serving.

    `max_message_bytes` limits what the server sends; `max_receive_bytes` (default: the same) what it accepts.
    """
    options = [o for o in SERVER_OPTIONS if not o[0].endswith("_message_length")]
    options += [
        ("grpc.max_receive_message_length", max_receive_bytes or max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=options)
    register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    try:
        port = server.add_secure_port(address, tls.server_credentials())
    except RuntimeError:  # grpc's "Failed to bind" (no SO_REUSEPORT sharing): a configuration mistake
        port = 0
    if port == 0:
        raise OSError(
            f"cannot listen on {address}: the port is in use or the address is not this machine's; "
            "change listen (party.toml)"
        )
    await server.start()
    for name in ("", *service_names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on port %d", ", ".join(service_names), port)
    return NodeServer(server, health, port, service_names)


def install_signal_handlers(node: NodeServer, grace: float = 5.0) -> None:
    """SIGTERM/SIGINT -> graceful shutdown (call from inside the running event loop)."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        log.info("signal %d: going NOT_SERVING and stopping", signum)
        loop.create_task(node.shutdown(grace))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
