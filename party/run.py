"""Build a party node from its config and serve it until SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from cleanroom.errors import CleanroomError, InvalidInput
from party.config import PartyConfig
from party.evaluation import MembersOnlySource, PartyEvaluation
from party.governance import PlanAuthorizer
from party.node import PartyNode
from party.retention import now_utc, prune_results
from party.service import SERVICE_NAME, PartyServicer, register
from transport import core_api
from transport.auth import Authorizer
from transport.ca import load_identity_key
from transport.server import NodeServer, install_signal_handlers, start_server

log = logging.getLogger("cleanroom.party")


def build_node(config: PartyConfig) -> tuple[PartyNode, Authorizer]:
    plan = core_api.load_plan(config.plan)
    if config.party_id not in {m.id for m in plan.data_parties}:
        raise InvalidInput(
            f"party {config.party_id!r} is not a data party (member with an address) of {config.plan}"
        )
    if not config.approved_plans:
        raise InvalidInput(
            f"party {config.party_id}: approved_plans is empty; this node would refuse every job"
        )
    schema = core_api.load_schema(config.schema)
    source = core_api.open_source(config.source, schema)
    identity_key = load_identity_key(config.identity_key)
    evaluation = party_evaluation(config, plan, schema, source, identity_key)
    node = PartyNode(
        party_id=config.party_id,
        plan=plan,
        plan_hash=plan.hash,
        approved_plans=config.approved_plans,
        schema=schema,
        schema_hash=core_api.schema_hash(schema),
        source=MembersOnlySource(source, evaluation),
        ledger=core_api.open_ledger(config.ledger, total_rho(config)),
        identity_key=identity_key,
        output_dir=config.output_dir,
        manifest=core_api.secagg_manifest(plan, core_api.schema_hash(schema)),
        reveals=core_api.reveal_record(config.ledger.parent / f"{config.party_id}-reveals.sqlite"),
        audit=core_api.audit_log(config.audit_log) if config.audit_log else None,
        schema_problem=_schema_problem(source),
        evaluation=evaluation,
    )
    coordinator = next((m for m in plan.members if m.id == plan.coordinator), None)
    pinned = coordinator.cert_sha256 if coordinator is not None and coordinator.cert_sha256 else None
    return node, PlanAuthorizer(plan.coordinator, pinned, plan=plan, audit=node.audit, ledger=node.ledger)


def party_evaluation(
    config: PartyConfig, plan: Any, schema: Any, source: Any, identity_key: Any
) -> PartyEvaluation:
    """Evaluation state; staged files live beside the ledger, never in the output folder."""
    from cryptography.hazmat.primitives import serialization

    raw = identity_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secret = hashlib.sha256(raw + plan.hash.encode()).digest()  # the membership split, known only here
    staging = config.ledger.parent / f"{config.party_id}-staged"
    return PartyEvaluation(config.party_id, plan, schema, source, staging, secret)


def total_rho(config: PartyConfig) -> float:
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
    prune_results(config.output_dir, float(node.plan.retention_days), now_utc(), node.audit)
    servicer = PartyServicer(node, authorizer)
    server = await start_server(config.listen, config.tls, register(servicer), (SERVICE_NAME,))
    install_signal_handlers(server)
    print(f"[{config.party_id}] serving on port {server.port}", flush=True)
    if ready is not None:
        ready.set()
    await server.wait()
    return server
