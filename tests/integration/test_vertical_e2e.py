"""Vertical collaborations through real party processes over gRPC with mutual TLS.

A whole job (PSI, alignment, MST rounds on the joined rows, results delivered), a lying coordinator whose
alignment map piles records onto one entry (refused before anything is charged), a coordinator replaying a
round's aggregate into another session, and a party whose join keys repeat (refuses to start, naming only
the column).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cleanroom.audit import read_entries, verify
from cleanroom.errors import PermissionDenied, ProtocolAbort
from cleanroom.ledger import Ledger
from cleanroom.plan import Plan
from cleanroom.schema import Schema
from cleanroom.secagg.manifest import session_id
from cleanroom.vertical import coordinator as vc
from cleanroom.vertical.messages import VerticalRoundRequest, setup_sid
from cleanroom.vertical.sample import COLUMNS, SCHEMA, TARGET, demo_parties
from cleanroom.vertical.spec import VerticalSpec
from cleanroom_cli import local
from cleanroom_cli.vertical_local import vertical_job
from coordinator.client import PartyClient
from coordinator.vertical import VerticalClient
from party.config import PartyConfig
from party.run import total_rho
from transport import wire
from transport.tls import TlsFiles

pytestmark = pytest.mark.adversary
ROWS = 120


def _args(out: Path, **extra: Any) -> argparse.Namespace:
    return argparse.Namespace(out=str(out), epsilon=3.0, delta=1e-9, format="csv", seed=3, **extra)


def _job(out: Path, parts: dict[str, pd.DataFrame]) -> local.LocalJob:
    columns = {p: list(c) for p, c in COLUMNS.items()}
    job = vertical_job(_args(out), SCHEMA, dict(parts), columns, TARGET, "classification", ROWS, ROWS)
    job.jobs = 3
    return job


def test_a_vertical_job_runs_end_to_end_and_both_ledgers_match_their_audit_logs(tmp_path: Path) -> None:
    job = _job(tmp_path / "run", demo_parties(ROWS, 0.8, seed=2))
    assert local.run_local(job) == 0
    synthetic = pd.read_csv(job.out / "hotel" / "synthetic.csv")
    assert set(synthetic.columns) == {"email", *COLUMNS["airline"], *COLUMNS["hotel"]}
    report = json.loads((job.out / "airline" / "report.json").read_text())
    assert report["partitioning"] == "vertical" and "skipped" in report["evaluation"]
    assert "intersection" not in json.dumps(report)  # the intersection size stays with the coordinator
    for party in COLUMNS:
        path, audited, spent = local.audit_vs_ledger(job, party)
        assert verify(path).ok and spent > 0 and audited == pytest.approx(spent, rel=1e-9)
        events = {(e["event"], e["outcome"]) for e in read_entries(path)}
        assert {
            ("vertical_setup", "answered"),
            ("vertical_align", "answered"),
            ("measure", "answered"),
        } <= events


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[local.LocalJob, dict[str, Path]]]:
    job = _job(tmp_path_factory.mktemp("vertical") / "attacks", demo_parties(ROWS, 0.8, seed=4))
    configs = local.prepare(job)
    procs = local.start_parties(job, configs)
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        yield job, configs
    finally:
        local.stop(procs)


class Liar:
    """A scripted coordinator with the plan's coordinator certificate."""

    def __init__(self, job: local.LocalJob, configs: dict[str, Path]) -> None:
        self.job, self.configs = job, configs
        self.plan = Plan.load(job.work / "collaboration.toml")
        self.schema = Schema.load(job.work / "schema.json")
        self.spec = VerticalSpec.from_plan(self.plan, self.schema)
        certs = job.work / "certs"
        self.tls = TlsFiles(certs / "ca.pem", certs / "coordinator.pem", certs / "coordinator.key")

    def ledger(self, party: str) -> list[Any]:
        config = PartyConfig.load(self.configs[party])
        return Ledger(config.ledger, total_rho(config)).entries()

    async def setup(self, tamper: Any = None) -> tuple[str, dict[str, VerticalClient]]:
        clients = {
            p: PartyClient(p, PartyConfig.load(c).listen, self.tls, 120) for p, c in self.configs.items()
        }
        vclients = {p: VerticalClient(c, 120) for p, c in clients.items()}
        job_id = uuid.uuid4().hex
        hello = wire.Hello(job_id, self.plan.hash, self.schema.hash(), "coordinator")
        for client in clients.values():
            await client.hello(hello)
        sid = setup_sid(self.plan.collaboration_id, self.plan.hash, job_id)
        other = self.spec.other
        setups = {p: await v.setup(sid, job_id) for p, v in vclients.items()}
        blinds = {p: await v.blind(sid, setups[other(p)]) for p, v in vclients.items()}
        lists = {p: await v.encrypted_list(sid) for p, v in vclients.items()}
        alignment = vc.align(self.spec, blinds, lists)
        for party, v in vclients.items():
            mapping = alignment.maps[party] if tamper is None else tamper(party, alignment.maps[party])
            await v.align(vc.peer_copy(lists[other(party)]), mapping.astype("<u4").tobytes())
        return job_id, vclients


def test_a_map_piling_records_onto_one_entry_is_refused_before_any_charge(running: Any) -> None:
    liar = Liar(*running)
    before = {p: len(liar.ledger(p)) for p in COLUMNS}

    def pile(party: str, mapping: np.ndarray) -> np.ndarray:
        return np.full_like(mapping, mapping[0]) if party == "hotel" else mapping

    with pytest.raises(PermissionDenied, match="repeats a position"):
        asyncio.run(liar.setup(tamper=pile))
    assert {p: len(liar.ledger(p)) for p in COLUMNS} == before
    config = PartyConfig.load(running[1]["hotel"])
    refused = [e for e in read_entries(config.audit_log) if e["event"] == "vertical_align"]
    assert refused and refused[-1]["outcome"] == "refused"


def test_an_aggregate_replayed_into_another_round_is_refused(running: Any) -> None:
    liar = Liar(*running)

    async def attack() -> None:
        job_id, clients = await liar.setup()
        sids = []
        for number in (100, 101):
            request = VerticalRoundRequest(job_id, f"{job_id}/{number}", number, (("stays",),), Fraction(400))
            sid = session_id(liar.plan.collaboration_id, number, liar.plan.hash, request.digest())
            for client in clients.values():
                await client.open_round(sid, request)
            sids.append(sid)
        first = await clients["hotel"].aggregate(sids[0])
        with pytest.raises(ProtocolAbort, match="not the peer's for this round|signature"):
            await clients["airline"].release(sids[1], first)

    asyncio.run(attack())


def test_repeated_join_keys_stop_the_party_naming_only_the_column(tmp_path: Path) -> None:
    parts = demo_parties(40, 0.8, seed=5)
    parts["airline"].loc[1, "email"] = " " + str(parts["airline"].loc[0, "email"]).upper()
    job = _job(tmp_path / "dup", parts)
    configs = local.prepare(job)
    result = subprocess.run(
        [sys.executable, "-m", "cleanroom_cli.main", "party", "serve", "--config", str(configs["airline"])],
        capture_output=True, text=True, env=local._env(), cwd=job.work, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "'email'" in line and "repeats keys" in line
    assert "@" not in line  # no key value in the message
