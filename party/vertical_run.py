"""Build a vertical plan's party node (`party.run.build_node` dispatches here) and its gRPC registration."""

from __future__ import annotations

from typing import Any

from cleanroom.audit import AuditLog
from cleanroom.errors import DataError
from cleanroom.ledger import Ledger
from cleanroom.schema import Schema
from cleanroom.secagg.reveal import SqliteRevealRecord
from party.config import PartyConfig
from party.governance import PlanAuthorizer, RateLimitedAudit
from party.sources import open_source
from party.vertical import VerticalPartyNode, vertical_spec
from transport.ca import load_identity_key


def build_vertical_node(
    config: PartyConfig, plan: Any, reveals: Any
) -> tuple[VerticalPartyNode, PlanAuthorizer]:
    from party.run import source_spec, total_rho

    schema = Schema.load(config.schema)  # the plan's joint schema (its hash is agreed at the handshake)
    spec = vertical_spec(plan, schema)
    source = open_source(source_spec(config.source), spec.party_schema(schema, config.party_id))
    node = VerticalPartyNode(
        party_id=config.party_id, plan=plan, plan_hash=plan.hash, approved_plans=config.approved_plans,
        schema=schema, schema_hash=schema.hash(), source=source,
        ledger=Ledger(config.ledger, total_rho(config)),
        identity_key=load_identity_key(config.identity_key), output_dir=config.output_dir,
        manifest=plan.secagg_manifest(schema.hash()), reveals=SqliteRevealRecord(reveals),
        audit=RateLimitedAudit(AuditLog(config.audit_log)) if config.audit_log else None, vspec=spec,
    )  # fmt: skip
    problem = node.data_problem()
    if problem is not None:  # e.g. repeated keys: the column is named, rows and values stay local
        raise DataError(str(problem), getattr(problem, "column", None))
    node.start_preparing()  # the first job's key and randomizers, while the node waits for it
    coordinator = next((m for m in plan.members if m.id == plan.coordinator), None)
    pinned = coordinator.cert_sha256 if coordinator is not None and coordinator.cert_sha256 else None
    return node, PlanAuthorizer(plan.coordinator, pinned, plan=plan, audit=node.audit, ledger=node.ledger)


def registration(node: Any, authorizer: Any) -> tuple[Any, tuple[str, ...]]:
    """(registrar, service names) serving PartyService and, for a vertical node, VerticalService."""
    from party.service import SERVICE_NAME, PartyServicer, register

    party = PartyServicer(node, authorizer)
    if not isinstance(node, VerticalPartyNode):
        return register(party), (SERVICE_NAME,)
    from party.vertical_service import SERVICE_NAME as VERTICAL
    from party.vertical_service import VerticalServicer, register_both

    return register_both(party, VerticalServicer(node, authorizer, party)), (SERVICE_NAME, VERTICAL)
