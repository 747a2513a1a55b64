"""PartyNode's handshake, round-spec and results checks, with real parts (see tests/node_fixtures.py)."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from cleanroom.errors import InvalidInput, PermissionDenied, PreconditionFailed, SchemaError
from cleanroom.secagg.messages import AdvertiseKeysRequest
from party import node as node_module
from party.node import PartyNode
from tests.node_fixtures import Collaboration, build_collaboration
from tests.round_driver import round_sid
from transport import wire


@pytest.fixture
def collab(tmp_path: Path) -> Collaboration:
    return build_collaboration(tmp_path)


@pytest.fixture
def node(collab: Collaboration) -> PartyNode:
    return collab.nodes["p0"]


def _hello(collab: Collaboration, node: PartyNode, **changes: str) -> wire.HelloReply:
    fields = {
        "job_id": "j",
        "plan_hash": collab.plan.hash,
        "schema_hash": collab.schema.hash(),
        "coordinator_id": "coordinator",
    }
    fields.update(changes)
    return node.hello(wire.Hello(**fields))


def _advertise(
    collab: Collaboration, node: PartyNode, spec: wire.RoundRequest, sid: bytes | None = None
) -> Any:
    sid = sid or round_sid(collab.manifest, collab.plan.hash, spec)
    return node.advertise_keys(spec, AdvertiseKeysRequest(sid, "AdvertiseKeys", "coordinator"))


def test_hello_checks_plan_and_schema(collab: Collaboration, node: PartyNode) -> None:
    with pytest.raises(PermissionDenied, match=f"plan {'cd' * 32} is not approved"):
        _hello(collab, node, plan_hash="cd" * 32)  # a changed plan: its hash is named in the refusal
    node.approved_plans = (collab.plan.hash, "ef" * 32)
    with pytest.raises(PreconditionFailed, match="is not this party.s plan"):
        _hello(collab, node, plan_hash="ef" * 32)
    with pytest.raises(SchemaError, match="schema hash"):
        _hello(collab, node, schema_hash="t" * 64)
    assert _hello(collab, node).approved
    outcomes = [(e["event"], e["outcome"]) for e in collab.audit("p0")]
    assert outcomes == [("start_job", "refused")] * 3 + [("start_job", "answered")]


def test_round_before_handshake_is_refused(collab: Collaboration, node: PartyNode) -> None:
    with pytest.raises(PreconditionFailed, match="handshake"):
        _advertise(collab, node, collab.request("j", 0))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"cliques": (("salary",),)}, PermissionDenied, "not measured"),
        ({"cliques": (("income", "age"),)}, InvalidInput, "canonical"),
        ({"cliques": (("age",), ("age",))}, InvalidInput, "twice"),
        ({"sigma_party2": Fraction(3)}, InvalidInput, "below"),
        ({"sigma_party2": Fraction(4)}, Exception, "over its limit"),
    ],
)
def test_illegal_round_specs_are_refused_without_charge(
    collab: Collaboration, node: PartyNode, changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    _hello(collab, node)
    with pytest.raises(error, match=message):
        _advertise(collab, node, collab.request("j", 0, **changes))
    assert node.ledger.entries() == []
    assert collab.audit("p0")[-1]["event"] == "measure" and collab.audit("p0")[-1]["outcome"] == "refused"


def test_three_way_cliques_are_refused(tmp_path: Path) -> None:
    collab = build_collaboration(tmp_path)
    node = collab.nodes["p0"]
    _hello(collab, node)
    spec = collab.request("j", 0)
    spec = wire.RoundRequest(spec.job_id, spec.release_id, 0, (("age", "income", "age"),), Fraction(400))
    with pytest.raises(PermissionDenied, match="1-way or 2-way"):
        _advertise(collab, node, spec)


def test_round_with_a_foreign_session_id_is_refused(collab: Collaboration, node: PartyNode) -> None:
    _hello(collab, node)
    with pytest.raises(PermissionDenied, match="session id"):
        _advertise(collab, node, collab.request("j", 0), sid=b"\x00" * 32)
    assert node.ledger.entries() == []


def test_a_verbatim_retry_gets_the_identical_advert_and_no_second_charge(
    collab: Collaboration, node: PartyNode
) -> None:
    _hello(collab, node)
    spec = collab.request("j", 0)
    assert _advertise(collab, node, spec) == _advertise(collab, node, spec)
    assert len(node.ledger.entries()) == 1


def test_results_only_for_the_entitled_and_verified(collab: Collaboration, node: PartyNode) -> None:
    collab.hello("j")
    assert collab.run(collab.request("j", 0)).total is not None
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


def test_non_entitled_party_receives_nothing(collab: Collaboration) -> None:
    collab.hello("j")
    assert collab.run(collab.request("j", 0)).total is not None
    with pytest.raises(PermissionDenied, match="not entitled"):
        collab.nodes["p1"].begin_results("j", [wire.ResultFile("model.onnx", 1, "00" * 32)])


def test_results_larger_than_the_limit_are_refused(collab: Collaboration, node: PartyNode) -> None:
    collab.hello("j")
    assert collab.run(collab.request("j", 0)).total is not None
    with pytest.raises(InvalidInput, match="over the limit"):
        node.begin_results(
            "j", [wire.ResultFile("synthetic.csv", node_module.MAX_RESULT_BYTES + 1, "00" * 32)]
        )
    assert not (node.output_dir / ".synthetic.csv.part").exists()


def test_delivered_results_are_pruned_after_the_retention_period(
    collab: Collaboration, node: PartyNode
) -> None:
    from datetime import UTC, datetime, timedelta

    from cleanroom.retention import prune
    from transport.wire import RETAINED_FILE_NAMES

    collab.hello("j")
    assert collab.run(collab.request("j", 0)).total is not None
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
    assert collab.audit("p0")[-1]["event"] == "retention_delete"
