"""The party node's round protocol with real parts (plan, ledger, audit, secure aggregation, pandas data).

Each lie a coordinator can tell about rounds is played by the scripted coordinator of `round_driver` against
three in-process nodes: the attack is refused or yields nothing beyond what was charged, and every party's
ledger and audit log agree. The same attacks over real processes and mTLS are in
tests/integration/test_malicious_coordinator.py.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cleanroom.errors import (
    BudgetExceeded,
    PermissionDenied,
    PreconditionFailed,
    ProtocolAbort,
    SchemaError,
)
from cleanroom.marginals import count_tables, flatten_tables
from cleanroom.secagg.messages import AdvertiseKeysRequest
from tests.node_fixtures import Collaboration, build_collaboration, sample_frame
from tests.round_driver import round_sid

CLIQUES = (("age",), ("income",), ("age", "income"))

pytestmark = pytest.mark.adversary  # the malicious-coordinator suite: `pytest -m adversary`


@pytest.fixture
def collab(tmp_path: Path) -> Collaboration:
    return build_collaboration(tmp_path)


def exact_sum(collab: Collaboration, parties: list[str], cliques: tuple[tuple[str, ...], ...]) -> np.ndarray:
    from cleanroom.encoding import encode

    total = 0
    for party in parties:
        frame = collab.nodes[party].source.read_frame()
        codes = encode(collab.schema, frame).codes
        total = total + flatten_tables(count_tables(codes, collab.schema.domain, list(cliques)))
    return np.asarray(total)


def charges(collab: Collaboration, party: str) -> list[tuple[str, str]]:
    return [(e.release_id, e.rho_text) for e in collab.nodes[party].ledger.entries()]


def audited_charges(collab: Collaboration, party: str) -> list[tuple[str, str]]:
    return [(e["release_id"], e["rho"]) for e in collab.audit(party) if e["event"] == "charge"]


def assert_ledger_and_audit_agree(collab: Collaboration) -> None:
    for party in collab.nodes:
        assert charges(collab, party) == audited_charges(collab, party)


def test_an_honest_round_sums_the_tables_with_the_promised_noise(collab: Collaboration) -> None:
    collab.hello("j")
    outcome = collab.run(collab.request("j", 0))
    assert outcome.aborted is None and outcome.survivors == ("p0", "p1", "p2")
    exact = exact_sum(collab, ["p0", "p1", "p2"], CLIQUES)
    # three shares of variance 400 per cell: |noise| < 6 sd = 6 * sqrt(1200) with overwhelming probability
    assert np.all(np.abs(outcome.total - exact) < 6 * np.sqrt(1200))
    assert not np.array_equal(outcome.total, exact)
    for party in collab.nodes:
        (entry,) = collab.nodes[party].ledger.entries()
        assert entry.released and entry.detail["round"] == 0
    assert_ledger_and_audit_agree(collab)


def test_the_charge_is_made_before_any_key_is_advertised(collab: Collaboration) -> None:
    collab.hello("j")
    spec = collab.request("j", 0)
    sid = round_sid(collab.manifest, collab.plan.hash, spec)
    request = AdvertiseKeysRequest(sid, "AdvertiseKeys", "coordinator")
    advert = collab.nodes["p0"].advertise_keys(spec, request)
    assert advert.sender == "p0"
    (entry,) = collab.nodes["p0"].ledger.entries()
    assert entry.release_id == "j/0" and not entry.released
    assert_ledger_and_audit_agree(collab)


def test_item1_a_charged_release_is_never_answered_in_a_new_session(collab: Collaboration) -> None:
    """Differencing: re-run an old release without party p2 under a new job; every party refuses."""
    collab.hello("j")
    first = collab.run(collab.request("j", 0))
    assert first.aborted is None
    spent = {p: collab.nodes[p].ledger.spent() for p in collab.nodes}
    collab.hello("k")  # a new handshake and job id
    for spec in (
        collab.request("j", 0),  # the old request verbatim
        dataclasses.replace(collab.request("k", 0), release_id="j/0"),  # the old round number, new job
        collab.request("k", 5, release_id="j/0"),  # the old release id under a fresh round number
    ):
        replay = collab.run(spec, parties=["p0", "p1"])
        assert replay.total is None and replay.aborted is not None
        assert {type(e) for e in replay.errors.values()} <= {PermissionDenied, PreconditionFailed}
        assert set(replay.errors) == {"p0", "p1"}
    assert {p: collab.nodes[p].ledger.spent() for p in collab.nodes} == spent
    for party in ("p0", "p1"):
        refusals = [e for e in collab.audit(party) if e["event"] == "measure" and e["outcome"] == "refused"]
        assert len(refusals) == 3
        answered = [e for e in collab.audit(party) if e["event"] == "measure" and e["outcome"] == "answered"]
        assert len(answered) == 1  # the audit log shows exactly the one charged answer
    assert_ledger_and_audit_agree(collab)


def test_item2_different_requests_in_one_session_are_refused(collab: Collaboration) -> None:
    """The coordinator gives p0 sigma^2 = 10^6 and the others 400, in what it presents as one session."""
    collab.hello("j")
    honest = collab.request("j", 0, sigma_party2=Fraction(400))
    loud = dataclasses.replace(honest, sigma_party2=Fraction(10**6))
    outcome = collab.run(honest, spec_for=lambda p: loud if p == "p0" else honest)
    # p0 computes another sid from its request and refuses the session id it was given
    assert isinstance(outcome.errors["p0"], PermissionDenied) and "session id" in str(outcome.errors["p0"])
    assert outcome.total is None or outcome.survivors == ("p1", "p2")
    assert collab.nodes["p0"].ledger.entries() == []
    # a coordinator that also bypasses its own checks: p0 gets its own sid, and the others are shown p0's
    # advert in their roster; they see an advert of another session and abort before masking anything
    collab2 = build_collaboration(collab.root / "second")
    collab2.hello("j")
    stolen = round_sid(collab2.manifest, collab2.plan.hash, loud)
    seen: dict[str, dict[str, object]] = {}

    def lie(party: str, stage: str, request: object) -> object:
        if party == "p0" and stage == "AdvertiseKeys":
            return dataclasses.replace(request, sid=stolen)  # type: ignore[type-var]
        if stage == "ShareKeys":
            roster = (seen["AdvertiseKeys"]["p0"], *request.adverts)  # type: ignore[attr-defined]
            return dataclasses.replace(request, adverts=roster)  # type: ignore[type-var]
        return request

    outcome = collab2.run(honest, spec_for=lambda p: loud if p == "p0" else honest, tamper=lie,
                          transcript=seen)  # fmt: skip
    assert outcome.total is None
    for party in ("p1", "p2"):
        assert isinstance(outcome.errors[party], ProtocolAbort)
        assert "belongs to another session" in str(outcome.errors[party])
    for party in collab2.nodes:
        assert not any(e.released for e in collab2.nodes[party].ledger.entries())


def test_item3_rounds_opened_before_finishing_cannot_pass_the_limits(tmp_path: Path) -> None:
    from cleanroom.accounting import cdp_rho

    collab = build_collaboration(tmp_path, overrides={"max_epsilon_per_job": "0.2", "epsilon": "0.3"})
    per_job, plan_total = cdp_rho(0.2, 1e-9), cdp_rho(0.3, 1e-9)
    sigma = Fraction(5000)  # rho = 3 / (2 * 5000 * n_min 2) = 1.5e-4 a round: 4 fit a job, 9 the plan
    collab.hello("j")
    node = collab.nodes["p0"]
    opened, refused = 0, []
    for number in range(20):  # open sessions without finishing any
        spec = collab.request("j", number, sigma_party2=sigma)
        request = AdvertiseKeysRequest(round_sid(collab.manifest, collab.plan.hash, spec), "AdvertiseKeys",
                                       "coordinator")  # fmt: skip
        try:
            node.advertise_keys(spec, request)
            opened += 1
        except (BudgetExceeded, PreconditionFailed) as error:
            refused.append(error)
    assert opened == 2  # the open-session cap; every opened session is already charged
    assert len(node.ledger.entries()) == 2
    assert all("sessions are open" in str(e) for e in refused)
    # sessions finished one by one: the job's limit, then the plan's, stop the charges atomically
    finished = {}
    for job, first in (("k", 20), ("m", 40)):
        collab.hello(job)
        for number in range(first, first + 10):
            outcome = collab.run(collab.request(job, number, sigma_party2=sigma))
            if outcome.total is None:
                assert all(isinstance(e, BudgetExceeded) for e in outcome.errors.values())
                break
        finished[job] = number - first
    assert finished == {"k": 4, "m": 4}  # in m, p0 reached the plan total one round early and dropped out
    assert [len([e for e in collab.nodes[p].ledger.entries() if e.job_id == "m"]) for p in collab.nodes] == [
        3, 4, 4,
    ]  # fmt: skip
    for party, member in collab.nodes.items():
        for job in ("j", "k", "m"):
            assert sum(e.rho for e in member.ledger.entries() if e.job_id == job) <= per_job * (1 + 1e-9)
        assert member.ledger.spent() <= plan_total * (1 + 1e-9), party
    assert_ledger_and_audit_agree(collab)


def test_item5_item9_a_failure_after_the_charge_reveals_nothing(tmp_path: Path) -> None:
    frame = sample_frame(40, seed=3)
    collab = build_collaboration(tmp_path, frames={"p2": frame})
    collab.hello("j")
    secret = "PATIENT Jane Doe HIV+ ssn 078-05-1120"
    frame.loc[7, "income"] = secret  # the data change after the handshake (reject policy for categories)
    collab.nodes["p2"].source = collab.nodes["p2"].source.__class__(
        frame, collab.schema, collab.nodes["p2"].source.rules, name="p2 data"
    )
    outcome = collab.run(collab.request("j", 0))
    error = outcome.errors["p2"]
    assert isinstance(error, ProtocolAbort)
    for text in (str(error), error.public_message(), repr(collab.audit("p2"))):
        assert secret not in text and "row" not in text.replace("round", "")
    assert outcome.survivors == ("p0", "p1") and outcome.total is not None  # the others go on
    assert collab.nodes["p2"].ledger.spent() > 0  # the failed round was charged at opening
    assert [e["outcome"] for e in collab.audit("p2") if e["event"] == "measure"] == ["failed"]
    assert_ledger_and_audit_agree(collab)


def test_item9_bad_data_refuse_the_handshake_naming_only_the_column(tmp_path: Path) -> None:
    frame = sample_frame(30, seed=4)
    frame.loc[3, "income"] = "PATIENT Jane Doe"
    collab = build_collaboration(tmp_path, frames={"p1": frame})
    with pytest.raises(SchemaError) as info:
        collab.hello("j")
    assert "'income'" in info.value.public_message()
    assert "Jane" not in info.value.public_message() and "Jane" not in str(info.value)
    assert "Jane" not in repr(collab.audit("p1"))
    assert collab.nodes["p1"].ledger.entries() == []
    assert collab.nodes["p1"].data_problem() is not None and "Jane" in str(collab.nodes["p1"].data_problem())


def test_a_party_that_released_nothing_receives_no_results(collab: Collaboration) -> None:
    import hashlib

    from transport import wire

    collab.hello("j")
    data = b"{}"
    meta = wire.ResultFile("report.json", len(data), hashlib.sha256(data).hexdigest())
    outcome = collab.run(collab.request("j", 0), parties=["p1", "p2"])  # p0, entitled, dropped out
    assert outcome.survivors == ("p1", "p2")
    with pytest.raises(PermissionDenied, match="took part in no round"):
        collab.nodes["p0"].begin_results("j", [meta])
    assert collab.run(collab.request("j", 1)).survivors == ("p0", "p1", "p2")
    collab.nodes["p0"].begin_results("j", [meta])  # once it took part, it may receive them
    refused = [e for e in collab.audit("p0") if e["event"] == "receive_results"]
    assert [e["outcome"] for e in refused] == ["refused", "answered"]
