"""A lying coordinator against real party processes over mutual TLS (started once for the module).

The coordinator here is scripted (`tests/round_driver.py` over `coordinator.client.PartyClient`): it holds
the plan's real coordinator certificate, so every lie reaches the party's checks. Each test plays one
attack and asserts that it is refused, that nothing was released beyond what each party charged, and that
each party's ledger and audit log agree (read from the party's own files after the attack).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from cleanroom.audit import read_entries, verify
from cleanroom.errors import BudgetExceeded, CleanroomError, PermissionDenied, PreconditionFailed
from cleanroom.ledger import Ledger
from cleanroom.plan import Plan
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli import local
from coordinator.client import PartyClient
from party.config import PartyConfig
from party.run import total_rho
from tests.round_driver import RoundOutcome, client_call, drive_round, round_sid
from transport import wire
from transport.tls import TlsFiles

PARTIES = ("party1", "party2", "party3")
ROWS_PER_PARTY = 80

pytestmark = pytest.mark.adversary  # the malicious-coordinator suite: `pytest -m adversary`


@dataclass
class Running:
    job: local.LocalJob
    plan: Plan
    schema: Schema
    configs: dict[str, Path]

    def tls(self) -> TlsFiles:
        certs = self.job.work / "certs"
        return TlsFiles(certs / "ca.pem", certs / "coordinator.pem", certs / "coordinator.key")

    def address(self, party: str) -> str:
        return PartyConfig.load(self.configs[party]).listen

    def ledger(self, party: str) -> Ledger:
        config = PartyConfig.load(self.configs[party])
        return Ledger(config.ledger, total_rho(config))

    def audit(self, party: str) -> list[dict[str, Any]]:
        config = PartyConfig.load(self.configs[party])
        assert config.audit_log is not None and verify(config.audit_log).ok
        return read_entries(config.audit_log)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    schema, frame, target, task = demo_dataset(3 * ROWS_PER_PARTY, seed=11)
    parts = {p: frame.iloc[i::3].reset_index(drop=True) for i, p in enumerate(PARTIES)}
    out = tmp_path_factory.mktemp("malicious")
    job = local.LocalJob(out, schema, parts, target, task, 1.0, 1e-9, 100, jobs=4)
    configs = local.prepare(job)
    procs = local.start_parties(job, configs)
    try:
        asyncio.run(local._wait_all(job, configs, procs))
        plan = Plan.load(job.work / "collaboration.toml")
        yield Running(job, plan, Schema.load(job.work / "schema.json"), configs)
    finally:
        local.stop(procs)


class Coordinator:
    """A coordinator that says what the test tells it to."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.schema = running.schema
        self.manifest = running.plan.secagg_manifest(self.schema.hash())

    async def __aenter__(self) -> Coordinator:
        self.clients = {p: PartyClient(p, self.running.address(p), self.running.tls(), 30) for p in PARTIES}
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients.values():
            await client.close()

    async def hello(self, job_id: str) -> int:
        """Handshake with every party; returns the first round number none of them has used."""
        message = wire.Hello(job_id, self.running.plan.hash, self.schema.hash(), "coordinator")
        replies = [await c.hello(message) for c in self.clients.values()]
        return max(r.next_round for r in replies)

    def spec(self, job_id: str, number: int, **changes: Any) -> wire.RoundRequest:
        cliques = ((self.schema.domain.attrs[0],), (self.schema.domain.attrs[1],))
        fields: dict[str, Any] = dict(
            job_id=job_id, release_id=f"{job_id}/{number}", round=number, cliques=cliques,
            sigma_party2=Fraction(10**6),
        )  # fmt: skip
        fields.update(changes)
        return wire.RoundRequest(**fields)

    async def run(self, spec: wire.RoundRequest, **options: Any) -> RoundOutcome:
        length = sum(self.schema.domain.project(c).size() for c in spec.cliques)
        call = client_call(self.clients)
        return await drive_round(self.manifest, self.running.plan.hash, spec, length, call, **options)


def play(running: Running, attack: Any) -> Any:
    async def go() -> Any:
        async with Coordinator(running) as coordinator:
            return await attack(coordinator)

    return asyncio.run(go())


def ledger_state(running: Running) -> dict[str, list[tuple[str, str, bool]]]:
    return {
        p: [(e.release_id, e.rho_text, e.released) for e in running.ledger(p).entries()] for p in PARTIES
    }


def rounds_only(entries: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    """Ledger entries of rounds, without each job's membership-holdout sizing (never sent)."""
    return [e for e in entries if not e[0].endswith("/membership-holdout")]


def assert_ledger_and_audit_agree(running: Running) -> None:
    for party in PARTIES:
        charged = [(e.release_id, e.rho_text) for e in running.ledger(party).entries()]
        audited = [
            (e["release_id"], e["rho"])
            for e in running.audit(party)
            if e["event"] == "charge"
        ]
        assert charged == audited, party
        released = {e.release_id for e in running.ledger(party).entries() if e.released}
        answered = [e for e in running.audit(party) if e["event"] == "measure" and e["outcome"] == "answered"]
        assert len(answered) == len(released), party  # every answer in the audit log was charged and released


def test_replaying_a_charged_release_without_one_party_is_refused(running: Running) -> None:
    """Item 1: run a release with everyone, then again under a new job without party3, to difference."""
    first_job, second_job = uuid.uuid4().hex, uuid.uuid4().hex

    async def attack(coordinator: Coordinator) -> tuple[RoundOutcome, list[RoundOutcome]]:
        number = await coordinator.hello(first_job)
        honest = await coordinator.run(coordinator.spec(first_job, number))
        await coordinator.hello(second_job)
        replays = [
            await coordinator.run(spec, parties=["party1", "party2"])
            for spec in (
                coordinator.spec(first_job, number),
                dataclasses.replace(coordinator.spec(second_job, number), release_id=f"{first_job}/{number}"),
                coordinator.spec(second_job, number + 7, release_id=f"{first_job}/{number}"),
            )
        ]
        return honest, replays

    before = ledger_state(running)
    honest, replays = play(running, attack)
    assert honest.total is not None and honest.survivors == PARTIES
    after_honest = ledger_state(running)
    for replay in replays:
        assert replay.total is None
        assert set(replay.errors) == {"party1", "party2"}
        assert all(isinstance(e, PermissionDenied | PreconditionFailed) for e in replay.errors.values())
    for party in PARTIES:  # the honest round and its job's holdout sizing (release.holdout_sizing), no more
        added = {e[0] for e in after_honest[party]} - {e[0] for e in before[party]}
        assert len(added) == 2 and f"{first_job}/membership-holdout" in added, added
        assert all(r.startswith(f"{first_job}/") for r in added), added
        refusals = [e for e in running.audit(party) if e["outcome"] == "refused" and e["event"] == "measure"]
        assert len(refusals) >= (3 if party != "party3" else 0)
    assert ledger_state(running) == after_honest  # the replays charged and released nothing
    assert_ledger_and_audit_agree(running)


def test_different_noise_for_different_parties_in_one_session_is_refused(running: Running) -> None:
    """Item 2: party1 is told sigma^2 = 10^8, the others 10^6, in what is presented as one session."""
    job_id = uuid.uuid4().hex

    async def attack(coordinator: Coordinator) -> RoundOutcome:
        number = await coordinator.hello(job_id)
        quiet = coordinator.spec(job_id, number)
        loud = dataclasses.replace(quiet, sigma_party2=Fraction(10**8))
        loud_sid = round_sid(coordinator.manifest, running.plan.hash, loud)
        seen: dict[str, dict[str, Any]] = {}

        def lie(party: str, stage: str, request: Any) -> Any:
            if party == "party1" and stage == "AdvertiseKeys":
                return dataclasses.replace(request, sid=loud_sid)
            if stage == "ShareKeys":  # show the others party1's advert from the other session
                roster = (seen["AdvertiseKeys"]["party1"], *request.adverts)
                return dataclasses.replace(request, adverts=roster)
            return request

        return await coordinator.run(
            quiet, spec_for=lambda p: loud if p == "party1" else quiet, tamper=lie, transcript=seen
        )

    before = ledger_state(running)
    outcome = play(running, attack)
    assert outcome.total is None
    for party in ("party2", "party3"):
        assert "belongs to another session" in str(outcome.errors[party])
    after = ledger_state(running)
    for party in PARTIES:
        new = rounds_only(after[party][len(before[party]) :])
        assert [released for *_, released in new] == [False]  # charged when opened, nothing masked or sent
    assert_ledger_and_audit_agree(running)


def test_opening_many_rounds_before_finishing_any_is_capped(running: Running) -> None:
    """Item 3: open 20 rounds (AdvertiseKeys only) at every party, then try to finish them."""
    job_id = uuid.uuid4().hex

    async def attack(coordinator: Coordinator) -> dict[str, list[CleanroomError | None]]:
        from cleanroom.secagg.messages import AdvertiseKeysRequest

        number = await coordinator.hello(job_id)
        results: dict[str, list[CleanroomError | None]] = {p: [] for p in PARTIES}
        for k in range(20):
            spec = coordinator.spec(job_id, number + k, sigma_party2=Fraction(10**4))
            request = AdvertiseKeysRequest(round_sid(coordinator.manifest, running.plan.hash, spec),
                                           "AdvertiseKeys", "coordinator")  # fmt: skip
            for party, client in coordinator.clients.items():
                try:
                    await client.stage("AdvertiseKeys", request, spec)
                    results[party].append(None)
                except CleanroomError as error:
                    results[party].append(error)
        return results

    before = ledger_state(running)
    results = play(running, attack)
    for party in PARTIES:
        assert results[party][:2] == [None, None]
        assert all(isinstance(e, PreconditionFailed | BudgetExceeded) for e in results[party][2:])
        added = ledger_state(running)[party][len(before[party]) :]
        assert len(rounds_only(added)) == 2 and len(added) == 3  # two rounds and the job's holdout sizing
    assert_ledger_and_audit_agree(running)


def test_a_job_cannot_spend_past_its_limit_round_by_round(running: Running) -> None:
    """Item 3: rounds finished one by one stop at the plan's per-job limit, atomically with the charge."""
    job_id = uuid.uuid4().hex

    async def attack(coordinator: Coordinator) -> list[RoundOutcome]:
        number = await coordinator.hello(job_id)
        outcomes = []
        for k in range(12):  # rho = 2 tables / (2 * 150 * n_min 2) = 1/300; a job may spend 0.01497: 4 fit
            spec = coordinator.spec(job_id, number + k, sigma_party2=Fraction(150))
            outcomes.append(await coordinator.run(spec))
            if outcomes[-1].total is None:
                break
        return outcomes

    outcomes = play(running, attack)
    assert len(outcomes) == 5 and outcomes[-1].total is None
    assert all(isinstance(e, BudgetExceeded) for e in outcomes[-1].errors.values())
    from cleanroom.accounting import cdp_rho

    per_job = cdp_rho(float(running.plan.max_epsilon_per_job), float(running.plan.delta))
    for party in PARTIES:
        spent = sum(e.rho for e in running.ledger(party).entries() if e.job_id == job_id)
        assert 0 < spent <= per_job * (1 + 1e-9)
    assert_ledger_and_audit_agree(running)
