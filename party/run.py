"""Build a party node from its config and serve it until SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cleanroom.accounting import cdp_rho
from cleanroom.audit import AuditLog
from cleanroom.errors import DataError, InvalidInput
from cleanroom.feasibility import MIN_PARTY_ROWS
from cleanroom.ledger import Ledger
from cleanroom.plan import Plan
from cleanroom.private_files import private_dir
from cleanroom.retention import prune
from cleanroom.schema import Schema
from cleanroom.secagg.reveal import SqliteRevealRecord
from party.config import PartyConfig
from party.evaluation import PartyEvaluation
from party.governance import PlanAuthorizer, RateLimitedAudit
from party.integrity import StateFiles, check_state
from party.node import PartyNode
from party.sources import DataSource, SourceSpec, open_source
from transport.auth import Authorizer
from transport.ca import load_identity_key
from transport.options import PARTY_MAX_RECEIVE_BYTES
from transport.server import NodeServer, install_signal_handlers, start_server
from transport.wire import RETAINED_FILE_NAMES

log = logging.getLogger("cleanroom.party")


def build_node(config: PartyConfig) -> tuple[PartyNode, Authorizer]:
    plan = Plan.load(config.plan)
    if config.party_id not in {m.id for m in plan.data_parties}:
        raise InvalidInput(
            f"party {config.party_id!r} is not a data party (member with an address) of {config.plan}"
        )
    if not config.approved_plans:
        raise InvalidInput(
            f"party {config.party_id}: approved_plans is empty; this node would refuse every job"
        )
    private_dir(config.ledger.parent)  # the state directory (0700 when created here)
    state = StateFiles(config.ledger, config.audit_log, reveals_path(config))
    check_state(state, total_rho(config), plan.coordinator)  # before anything opens (or creates) a file
    if getattr(plan, "partitioning", "horizontal") == "vertical":  # docs/vertical.md
        from party.vertical_run import build_vertical_node

        return build_vertical_node(config, plan, state.reveals)
    schema = Schema.load(config.schema)
    source = open_source(source_spec(config.source), schema)
    check_row_count(source)
    identity_key = load_identity_key(config.identity_key)
    evaluation = party_evaluation(config, plan, schema, source, identity_key)
    evaluation.discard_staged()  # no job survives a restart: its staged model and data are stale
    node = PartyNode(
        party_id=config.party_id,
        plan=plan,
        plan_hash=plan.hash,
        approved_plans=config.approved_plans,
        schema=schema,
        schema_hash=schema.hash(),
        source=source,
        ledger=Ledger(config.ledger, total_rho(config)),
        identity_key=identity_key,
        output_dir=config.output_dir,
        manifest=plan.secagg_manifest(schema.hash()),
        reveals=SqliteRevealRecord(state.reveals),
        audit=RateLimitedAudit(AuditLog(config.audit_log)) if config.audit_log else None,
        evaluation=evaluation,
    )
    check_data_at_start(node)
    coordinator = next((m for m in plan.members if m.id == plan.coordinator), None)
    pinned = coordinator.cert_sha256 if coordinator is not None and coordinator.cert_sha256 else None
    return node, PlanAuthorizer(plan.coordinator, pinned, plan=plan, audit=node.audit, ledger=node.ledger)


def reveals_path(config: PartyConfig) -> Path:
    """The durable record of revealed share kinds, beside the ledger."""
    return config.ledger.parent / f"{config.party_id}-reveals.sqlite"


def source_spec(value: str | dict[str, Any]) -> SourceSpec:
    """The party.toml `[data] source` value (a file path, or a table of `party.sources` keys) as a spec."""
    return SourceSpec.from_config({"path": value} if isinstance(value, str) else dict(value))


def party_evaluation(
    config: PartyConfig, plan: Plan, schema: Schema, source: DataSource, identity_key: Ed25519PrivateKey
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
    return cdp_rho(config.epsilon, config.delta)


def check_row_count(source: DataSource) -> None:
    """Refuse to start with fewer rows than any job needs (a local check: the count never leaves the node)."""
    rows = source.row_count()
    if rows < MIN_PARTY_ROWS:
        raise DataError(
            f"{source.name}: {rows} rows, fewer than the {MIN_PARTY_ROWS} every party needs (its membership "
            "holdout and the model's evaluation); see docs/operations.md, 'Party node'"
        )


def check_data_at_start(node: PartyNode) -> None:
    """Refuse to start on data the schema rejects; the message (column, row, value) is for local eyes only."""
    problem = node.data_problem()
    if problem is not None:
        raise DataError(str(problem), getattr(problem, "column", None))


def prune_delivered(config: PartyConfig, plan: Plan, audit: AuditLog | None) -> list[Path]:
    """Delete this party's delivered results once they are older than the plan's retention_days (audited)."""
    return prune(config.output_dir, float(plan.retention_days), datetime.now(UTC), audit, RETAINED_FILE_NAMES)


async def serve(config: PartyConfig, ready: asyncio.Event | None = None) -> NodeServer:
    node, authorizer = build_node(config)
    prune_delivered(config, node.plan, node.audit)  # retention also runs at every start
    from party.vertical_run import registration

    registrar, names = registration(node, authorizer)
    gc.freeze()  # modules and the node live as long as the process: collections need not scan them
    server = await start_server(
        config.listen, config.tls, registrar, names, max_receive_bytes=PARTY_MAX_RECEIVE_BYTES
    )
    install_signal_handlers(server)
    print(f"[{config.party_id}] serving on port {server.port}", flush=True)
    if ready is not None:
        ready.set()
    await server.wait()
    if isinstance(node.audit, RateLimitedAudit):
        node.audit.flush()  # counts of refusals the rate limit has not summarised yet
    return server
