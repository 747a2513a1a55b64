"""PartyNode's plan checks with stand-ins for plan, ledger, source and secure aggregation (no gRPC)."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cleanroom.domain import Domain
from cleanroom.errors import (
    BudgetExceeded,
    DataError,
    InvalidInput,
    PermissionDenied,
    PreconditionFailed,
    SchemaError,
)
from party import node as node_module
from party.node import PartyNode
from transport import wire

PLAN_HASH = "ab" * 32


class FakeLedger:
    def __init__(self, total: float) -> None:
        self.total, self.charges, self.payloads, self.released = total, {}, {}, set()

    def reserve(
        self, release_id: str, rho: float, plan_hash: str, job_id: str, detail: dict[str, Any]
    ) -> None:
        if release_id not in self.charges:
            if self.spent() + rho > self.total:
                raise BudgetExceeded(f"spent {self.spent()} + {rho} > {self.total}")
            self.charges[release_id] = (rho, plan_hash, job_id, detail)

    def spent(self) -> float:
        return sum(c[0] for c in self.charges.values())

    def remaining(self) -> float:
        return self.total - self.spent()

    def spent_by_plan(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for rho, plan, *_ in self.charges.values():
            out[plan] = out.get(plan, 0.0) + rho
        return out

    def entries(self) -> list[Any]:
        return [
            SimpleNamespace(release_id=r, rho=rho, plan_hash=plan, job_id=job, detail=detail)
            for r, (rho, plan, job, detail) in self.charges.items()
        ]

    def payload(self, release_id: str) -> bytes | None:
        return self.payloads.get(release_id)

    def store_payload(self, release_id: str, data: bytes) -> None:
        self.payloads[release_id] = data

    def mark_released(self, release_id: str) -> None:
        self.released.add(release_id)


class FakeSecAggParty:
    """Stands in for SecAggParty: answers with what it was given, masking is the identity."""

    def __init__(self, manifest: Any, party_id: str, key: Any, sid: bytes, reveals: Any) -> None:
        self.party_id, self.sid = party_id, sid

    def advertise_keys(self, request: Any) -> Any:
        return SimpleNamespace(sender=self.party_id, sid=self.sid)

    def masked_input(self, request: Any, vector: np.ndarray) -> Any:
        return SimpleNamespace(vector=np.asarray(vector, dtype="<i8").tobytes())


class CountingSource:
    def __init__(self) -> None:
        self.calls = 0

    def count_tables(self, cliques: list[tuple[str, ...]]) -> list[np.ndarray]:
        self.calls += 1
        return [np.full(DOMAIN.project(c).shape, 5, dtype=np.int64) for c in cliques]


class FakeAudit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []

    def append(self, event: str, outcome: str, **fields: Any) -> None:
        self.entries.append((event, outcome, fields))


def _approved(plan_hash: str, approved_plans: tuple[str, ...]) -> None:
    if plan_hash not in approved_plans:
        raise PermissionDenied(f"plan {plan_hash} is not approved by this party")


DOMAIN = Domain(("age", "sex", "income"), (4, 3, 2))


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> PartyNode:
    monkeypatch.setattr(
        node_module, "session_id", lambda c, r, p: hashlib.sha256(f"{c}|{r}|{p}".encode()).digest()
    )
    monkeypatch.setattr(node_module, "release_rho", lambda k, s2, n, parties, cells: k / (2 * float(s2) * n))
    monkeypatch.setattr(node_module, "cdp_rho", lambda eps, delta: 0.05 * eps)
    monkeypatch.setattr(node_module, "party_noise_share", lambda size, s2: np.ones(size, dtype=np.int64))
    monkeypatch.setattr(node_module, "flatten_tables", lambda ts: np.concatenate([t.ravel() for t in ts]))
    monkeypatch.setattr(node_module, "SecAggParty", FakeSecAggParty)
    everything = ["run_jobs", "receive_results", "receive_synthetic_data", "receive_model"]
    members = [
        SimpleNamespace(id=p, address=f"h:{i}", identity_key="", abilities=everything if p != "c" else [])
        for i, p in enumerate("abc")
    ]
    monkeypatch.setattr(node_module, "require_approved_hash", _approved)
    plan = SimpleNamespace(
        collaboration_id="collab",
        members=members,
        data_parties=members,
        n_min=3,
        min_parties=2,
        dropout_tolerance=1,
        colluders=0,
        epsilon=1.0,
        max_epsilon_per_job=0.5,
        max_jobs=2,
        delta=1e-9,
        coordinator="coord",
    )
    schema = SimpleNamespace(domain=DOMAIN)
    built = PartyNode(
        "a",
        plan,
        PLAN_HASH,
        (PLAN_HASH,),
        schema,
        "s" * 64,
        CountingSource(),
        FakeLedger(1.0),
        None,
        tmp_path / "out",
        audit=FakeAudit(),
    )
    return built


def _hello(node: PartyNode, **changes: str) -> wire.HelloReply:
    fields = {"job_id": "j", "plan_hash": PLAN_HASH, "schema_hash": "s" * 64, "coordinator_id": "coord"}
    fields.update(changes)
    return node.hello(wire.Hello(**fields))


SID = hashlib.sha256(b"collab|0|" + PLAN_HASH.encode()).digest()


def _round(**changes: Any) -> wire.RoundRequest:
    fields: dict[str, Any] = {
        "job_id": "j",
        "release_id": "j/0",
        "round": 0,
        "cliques": (("age",), ("sex",), ("age", "income")),
        "sigma_party2": Fraction(400),
    }
    fields.update(changes)
    return wire.RoundRequest(**fields)


def _advertise(node: PartyNode, spec: wire.RoundRequest, sid: bytes = SID) -> Any:
    return node.advertise_keys(spec, SimpleNamespace(sid=sid))


def test_hello_checks_plan_and_schema(node: PartyNode) -> None:
    with pytest.raises(PermissionDenied, match=f"plan {'cd' * 32} is not approved"):
        _hello(node, plan_hash="cd" * 32)  # a changed plan: its hash is named in the refusal
    node.approved_plans = (PLAN_HASH, "ef" * 32)
    with pytest.raises(PreconditionFailed, match="is not this party.s plan"):
        _hello(node, plan_hash="ef" * 32)
    with pytest.raises(SchemaError, match="schema hash"):
        _hello(node, schema_hash="t" * 64)
    node.schema_problem = "column 'age' is missing"
    with pytest.raises(SchemaError, match="'age' is missing"):
        _hello(node)
    node.schema_problem = None
    assert _hello(node).approved
    assert [(e, o) for e, o, _ in node.audit.entries] == [("start_job", "refused")] * 4 + [
        ("start_job", "answered")
    ]


def test_hello_refuses_a_plan_this_party_did_not_approve(node: PartyNode) -> None:
    node.approved_plans = ("cd" * 32,)
    with pytest.raises(PermissionDenied, match="not approved"):
        _hello(node)


def test_round_before_handshake_is_refused(node: PartyNode) -> None:
    with pytest.raises(PreconditionFailed, match="handshake"):
        _advertise(node, _round())


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"cliques": (("age", "sex", "income"),)}, PermissionDenied, "1-way or 2-way"),
        ({"cliques": (("salary",),)}, PermissionDenied, "not measured"),
        ({"cliques": (("income", "age"),)}, InvalidInput, "canonical"),
        ({"sigma_party2": Fraction(3)}, InvalidInput, "below"),
        ({"sigma_party2": Fraction(4)}, BudgetExceeded, "over the agreed"),
    ],
)
def test_illegal_round_specs_are_refused_without_charge(
    node: PartyNode, changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    _hello(node)
    with pytest.raises(error, match=message):
        _advertise(node, _round(**changes))
    assert node.ledger.spent() == 0
    assert node.source.calls == 0
    assert node.audit.entries[-1][:2] == ("measure", "refused")


def test_masked_input_charges_before_noise_and_retries_resend_identical_bytes(node: PartyNode) -> None:
    _hello(node)
    assert _advertise(node, _round()).sender == "a"
    assert node.ledger.spent() == 0  # nothing charged until data are touched
    first = node.masked_input(SimpleNamespace(sid=SID)).vector
    charged = node.ledger.spent()
    assert charged == pytest.approx(3 / (2 * 400 * 3))
    second = node.masked_input(SimpleNamespace(sid=SID)).vector
    assert first == second
    assert node.ledger.spent() == charged
    assert node.source.calls == 1
    assert node.bytes_uploaded == 16 * (4 + 3 + 8)


def test_round_with_a_foreign_session_id_is_refused(node: PartyNode) -> None:
    _hello(node)
    with pytest.raises(PermissionDenied, match="session id"):
        _advertise(node, _round(), sid=b"\x00" * 32)
    assert node.ledger.spent() == 0


def test_results_only_for_the_entitled_and_verified(node: PartyNode) -> None:
    _hello(node)
    data = b"a,b\n1,2\n"
    meta = wire.ResultFile("synthetic.csv", len(data), hashlib.sha256(data).hexdigest())
    writer = node.begin_results("j", [meta])
    writer.write("synthetic.csv", 0, data)
    assert writer.finish() == ["synthetic.csv"]
    assert (node.output_dir / "synthetic.csv").read_bytes() == data
    with pytest.raises(PreconditionFailed):
        node.begin_results("other-job", [meta])
    bad = node.begin_results("j", [wire.ResultFile("report.json", 2, "00" * 32)])
    bad.write("report.json", 0, b"{}")
    with pytest.raises(InvalidInput, match="corrupted"):
        bad.finish()
    assert not (node.output_dir / "report.json").exists()


def test_non_entitled_party_receives_nothing(node: PartyNode) -> None:
    node.party_id = "c"
    _hello(node)
    with pytest.raises(PermissionDenied, match="not entitled"):
        node.begin_results("j", [wire.ResultFile("model.onnx", 1, "00" * 32)])


def test_per_job_limit_and_plan_total_are_enforced_across_jobs(node: PartyNode) -> None:
    spec = _round(sigma_party2=Fraction(30))  # rho = 3 / (2 * 30 * 3) = 1/60 per round; a job may spend 0.025
    _hello(node)
    _advertise(node, spec)
    node.masked_input(SimpleNamespace(sid=SID))
    with pytest.raises(BudgetExceeded, match="job j to"):
        _advertise(node, _round(sigma_party2=Fraction(30), release_id="j/1", round=1), sid=SID_1)
    assert _hello(node, job_id="k").next_round == 1
    with pytest.raises(PermissionDenied, match="never reused"):
        _advertise(node, _round(job_id="k", release_id="k/0", sigma_party2=Fraction(30)))
    _advertise(node, _round(job_id="k", release_id="k/1", round=1, sigma_party2=Fraction(30)), sid=SID_1)
    node.masked_input(SimpleNamespace(sid=SID_1))
    assert node.ledger.spent() == pytest.approx(2 / 60)
    with pytest.raises(PermissionDenied, match="allows 2 jobs"):
        _hello(node, job_id="third")


SID_1 = hashlib.sha256(b"collab|1|" + PLAN_HASH.encode()).digest()


def test_results_larger_than_the_limit_are_refused(node: PartyNode) -> None:
    _hello(node)
    with pytest.raises(InvalidInput, match="over the limit"):
        node.begin_results(
            "j", [wire.ResultFile("synthetic.csv", node_module.MAX_RESULT_BYTES + 1, "00" * 32)]
        )
    assert not (node.output_dir / ".synthetic.csv.part").exists()


def test_delivered_results_are_pruned_after_the_retention_period(node: PartyNode) -> None:
    from datetime import UTC, datetime, timedelta

    from cleanroom.retention import prune
    from transport.wire import RETAINED_FILE_NAMES

    _hello(node)
    data = b"{}"
    writer = node.begin_results("j", [wire.ResultFile("report.json", 2, hashlib.sha256(data).hexdigest())])
    writer.write("report.json", 0, data)
    writer.finish()
    (node.output_dir / "notes.txt").write_text("the operator's own file")
    soon = datetime.now(UTC) + timedelta(days=29)
    assert prune(node.output_dir, 30, soon, node.audit, RETAINED_FILE_NAMES) == []
    later = datetime.now(UTC) + timedelta(days=31)
    removed = prune(node.output_dir, 30, later, node.audit, RETAINED_FILE_NAMES)
    assert removed == [node.output_dir / "report.json"]
    assert sorted(p.name for p in node.output_dir.iterdir()) == ["notes.txt"]
    assert node.audit.entries[-1][:2] == ("retention_delete", "deleted")


class RejectingSource:
    """A source whose data break the schema's reject policy when counted."""

    def count_tables(self, cliques: list[tuple[str, ...]]) -> list[np.ndarray]:
        raise DataError("data.csv: column 'age': row 7 value 'twelve' cannot be read as a number")


def test_bad_data_fails_the_round_with_nothing_charged(node: PartyNode) -> None:
    node.source = RejectingSource()
    _hello(node)
    _advertise(node, _round())
    with pytest.raises(DataError, match="row 7"):
        node.masked_input(SimpleNamespace(sid=SID))
    assert node.ledger.spent() == 0 and node.ledger.payloads == {}
