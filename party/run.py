"""Build a party node from its config and serve it until SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from cleanroom.errors import CleanroomError, InvalidInput, PreconditionFailed
from party.config import PartyConfig
from party.node import PartyNode
from party.service import SERVICE_NAME, PartyServicer, register
from transport import core_api
from transport.auth import Authorizer
from transport.ca import load_identity_key
from transport.server import NodeServer, install_signal_handlers, start_server

log = logging.getLogger("cleanroom.party")


def build_node(config: PartyConfig) -> tuple[PartyNode, Authorizer]:
    plan_bytes = config.plan.read_bytes()
    plan_hash = hashlib.sha256(plan_bytes).hexdigest()
    if config.plan_sha256 and config.plan_sha256.lower() != plan_hash:
        raise PreconditionFailed(
            f"plan {config.plan} has hash {plan_hash[:16]}..., the config pins {config.plan_sha256[:16]}..."
        )
    plan = core_api.load_plan(config.plan)
    if config.party_id not in {m.id for m in plan.members}:
        raise InvalidInput(f"party {config.party_id!r} is not a member of the plan {config.plan}")
    schema = core_api.load_schema(config.schema)
    source = core_api.open_source(config.source, schema)
    node = PartyNode(
        party_id=config.party_id,
        plan=plan,
        plan_hash=plan_hash,
        approved=bool(config.plan_sha256),
        schema=schema,
        schema_hash=core_api.schema_hash(schema),
        source=source,
        ledger=core_api.open_ledger(config.ledger, _total_rho(config)),
        identity_key=load_identity_key(config.identity_key),
        output_dir=config.output_dir,
        schema_problem=_schema_problem(source),
    )
    pinned = next(
        (m.cert_sha256 for m in plan.members if m.id == plan.coordinator and getattr(m, "cert_sha256", "")),
        None,
    )
    return node, Authorizer(plan.coordinator, pinned)


def _total_rho(config: PartyConfig) -> float:
    if config.rho is not None:
        return config.rho
    assert config.epsilon is not None
    return core_api.rho_for(config.epsilon, config.delta)


def _schema_problem(source: object) -> str | None:
    """Check the data against the schema at start-up; the problem is reported at the handshake."""
    try:
        source.check_schema()  # type: ignore[attr-defined]
    except CleanroomError as error:
        log.error("data do not match the schema: %s", error)
        return str(error)
    return None


async def serve(config: PartyConfig, ready: asyncio.Event | None = None) -> NodeServer:
    node, authorizer = build_node(config)
    servicer = PartyServicer(node, authorizer)
    server = await start_server(config.listen, config.tls, register(servicer), (SERVICE_NAME,))
    install_signal_handlers(server)
    print(f"[{config.party_id}] serving on port {server.port}", flush=True)
    if ready is not None:
        ready.set()
    await server.wait()
    return server
