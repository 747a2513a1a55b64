"""In-process party nodes built from real parts: a real plan, schema, pandas source, SQLite ledger, reveal
record, audit log and secure-aggregation state machine (only gRPC is left out; the integration suite has it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleanroom.accounting import cdp_rho
from cleanroom.audit import AuditLog, read_entries
from cleanroom.ledger import Ledger
from cleanroom.plan import Plan
from cleanroom.schema import Schema
from cleanroom.secagg.reveal import SqliteRevealRecord
from party.node import PartyNode
from party.sources import SourceSpec, open_source
from tests.governance_fixtures import write_plan
from tests.round_driver import RoundOutcome, drive_round, node_call
from transport import wire


def sample_frame(n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"age": rng.integers(17, 91, n_rows), "income": rng.choice(["<=50K", ">50K"], n_rows)}
    )


@dataclass
class Collaboration:
    plan: Plan
    schema: Schema
    nodes: dict[str, PartyNode]
    root: Path

    @property
    def manifest(self) -> Any:
        return self.plan.secagg_manifest(self.schema.hash())

    def hello(self, job_id: str, parties: list[str] | None = None) -> dict[str, wire.HelloReply]:
        message = wire.Hello(job_id, self.plan.hash, self.schema.hash(), self.plan.coordinator)
        return {p: self.nodes[p].hello(message) for p in parties or list(self.nodes)}

    def request(self, job_id: str, round_number: int, **changes: Any) -> wire.RoundRequest:
        fields: dict[str, Any] = {
            "job_id": job_id,
            "release_id": f"{job_id}/{round_number}",
            "round": round_number,
            "cliques": (("age",), ("income",), ("age", "income")),
            "sigma_party2": Fraction(400),
        }
        fields.update(changes)
        return wire.RoundRequest(**fields)

    def length(self, spec: wire.RoundRequest) -> int:
        return spec.length or sum(self.schema.domain.project(c).size() for c in spec.cliques)

    def run(self, spec: wire.RoundRequest, **options: Any) -> RoundOutcome:
        call = node_call(self.nodes)
        work = drive_round(self.manifest, self.plan.hash, spec, self.length(spec), call, **options)
        return asyncio.run(work)

    def audit(self, party: str) -> list[dict[str, Any]]:
        return read_entries(self.root / f"{party}-audit.jsonl")


def build_collaboration(
    root: Path,
    frames: dict[str, pd.DataFrame] | None = None,
    overrides: dict[str, str] | None = None,
    n_parties: int = 3,
) -> Collaboration:
    """Data parties p0, p1, ... (three unless told; dropout_tolerance 1 unless overridden) with their own
    state files."""
    root.mkdir(parents=True, exist_ok=True)
    files = write_plan(root, n_parties, overrides)
    plan = Plan.load(files.path)
    schema = Schema.load(root / "schema.json")
    nodes = {}
    for i, party in enumerate(files.keys):
        frame = (frames or {}).get(party, sample_frame(60, seed=i))
        source = open_source(SourceSpec.from_frame(frame, name=f"{party} data"), schema)
        nodes[party] = PartyNode(
            party_id=party,
            plan=plan,
            plan_hash=plan.hash,
            approved_plans=(plan.hash,),
            schema=schema,
            schema_hash=schema.hash(),
            source=source,
            ledger=Ledger(root / f"{party}-ledger.sqlite", cdp_rho(10.0, 1e-9)),
            identity_key=files.keys[party],
            output_dir=root / "out" / party,
            manifest=plan.secagg_manifest(schema.hash()),
            reveals=SqliteRevealRecord(root / f"{party}-reveals.sqlite"),
            audit=AuditLog(root / f"{party}-audit.jsonl"),
        )
    return Collaboration(plan, schema, nodes, root)
