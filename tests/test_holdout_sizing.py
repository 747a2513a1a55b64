"""The job-sized membership holdout: each party's noisy row count, charged once per job, kept in its ledger.

The count (`release.holdout_sizing`: a discrete Gaussian on the party's number of records, sensitivity 1
under add/remove-one) is the only thing the holdout fraction depends on; conditioned on it the split is per
record, which `tests/test_release_sensitivity.py` checks through the node's counting path. Here: the
fraction rule, the charge (exactly the plan's share, once per job, atomic with the budget, read back after
a restart, never drawn twice even when rounds open in parallel) and the noise's variance.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cleanroom.accounting import cdp_rho
from cleanroom.audit import AuditLog, read_entries, rho_charged_by_plan
from cleanroom.errors import BudgetExceeded, InvalidInput, PreconditionFailed, ProtocolAbort
from cleanroom.evaluation import release
from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from party.node import PartyNode
from party.run import party_evaluation
from party.sources.frame import FrameSource
from party.sources.rules import rules_from_schema

IDENTITY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ROWS = 900


def test_holdout_fraction_targets_the_job_total_within_bounds() -> None:
    low, high = release.HOLDOUT_BOUNDS
    assert release.holdout_fraction(600, 3) == high  # a small job keeps more non-members
    assert release.holdout_fraction(10**9, 3) == low
    middle = release.HOLDOUT_NONMEMBERS / 3 / 0.1
    assert release.holdout_fraction(middle, 3) == pytest.approx(0.1)
    assert release.holdout_fraction(-50, 3) == high  # a noisy count below one row
    fractions = [release.holdout_fraction(n, 3) for n in range(100, 100_000, 997)]
    assert all(a >= b for a, b in zip(fractions, fractions[1:], strict=False))
    with pytest.raises(InvalidInput, match="n_parties"):
        release.holdout_fraction(1000, 0)


def test_sizing_rho_is_the_plans_share_at_most() -> None:
    job_rho = cdp_rho(1.0, 1e-9)
    sizing = release.holdout_sizing(job_rho, 0.1)
    allotted = job_rho * 0.1 * release.HOLDOUT_SIZING_FRACTION
    assert sizing.sigma2.denominator == 1 and sizing.rho == pytest.approx(1 / (2 * float(sizing.sigma2)))
    assert 0.999 * allotted <= sizing.rho <= allotted


def _node(state: Path, total_rho: float = 1.0, audit: AuditLog | None = None) -> PartyNode:
    schema_dict, frame, target, task = demo_dataset(ROWS, seed=3)
    schema = Schema.from_dict(schema_dict)
    plan = SimpleNamespace(
        hash="ab" * 32, task=task, target=target, epsilon=1.0, max_epsilon_per_job=1.0, delta=1e-9,
        evaluation_share=0.1, n_min=2, data_parties=(1, 2, 3), collaboration_id="sizing", coordinator="c",
        max_jobs=0,
    )  # fmt: skip
    config = SimpleNamespace(party_id="p1", ledger=state / "ledger.sqlite")
    source = FrameSource(frame, schema, rules_from_schema(schema), name="sizing data")
    evaluation = party_evaluation(config, plan, schema, source, IDENTITY)  # type: ignore[arg-type]
    return PartyNode(
        party_id="p1", plan=plan, plan_hash=plan.hash, approved_plans=(plan.hash,), schema=schema,
        schema_hash=schema.hash(), source=source, ledger=Ledger(config.ledger, total_rho),
        identity_key=IDENTITY, output_dir=state / "out", evaluation=evaluation, audit=audit,
    )  # fmt: skip


def _sizings(node: PartyNode, job_id: str) -> list[dict[str, object]]:
    return [e.detail for e in node.ledger.entries() if e.release_id == f"{job_id}/membership-holdout"]


def test_node_charges_the_sizing_once_per_job_and_reads_it_back_after_a_restart(tmp_path: Path) -> None:
    node = _node(tmp_path)
    with pytest.raises(PreconditionFailed, match="no sized membership holdout"):
        node.evaluation.member_count_tables("job-1", [("age",)])
    node.size_holdout("job-1")
    node.size_holdout("job-1")
    (detail,) = _sizings(node, "job-1")
    sizing = release.holdout_sizing(cdp_rho(1.0, 1e-9), 0.1)
    (entry,) = [e for e in node.ledger.entries() if e.release_id == "job-1/membership-holdout"]
    assert entry.rho == pytest.approx(sizing.rho) and "round" not in detail  # not a round number
    noisy = float(detail["noisy_rows"])  # type: ignore[arg-type]
    assert abs(noisy - ROWS) < 7 * float(sizing.sigma2) ** 0.5
    members = len(node.evaluation.split("job-1").members)
    assert node.evaluation.member_count_tables("job-1", [("age",)])[0].sum() == members

    restarted = _node(tmp_path)  # a new process over the same ledger: the same count, no new charge
    restarted.size_holdout("job-1")
    assert len(_sizings(restarted, "job-1")) == 1
    assert np.array_equal(restarted.evaluation.split("job-1").members, node.evaluation.split("job-1").members)
    restarted.size_holdout("job-2")
    assert len(_sizings(restarted, "job-2")) == 1 and len(restarted.ledger.entries()) == 2


def test_rounds_opened_in_parallel_draw_and_charge_one_count(tmp_path: Path) -> None:
    node = _node(tmp_path)
    threads = [threading.Thread(target=node.size_holdout, args=("job-p",)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_sizings(node, "job-p")) == 1 and node.evaluation.sized("job-p")


def test_sizing_is_refused_atomically_when_the_budget_is_spent(tmp_path: Path) -> None:
    node = _node(tmp_path, total_rho=1e-6)
    with pytest.raises(BudgetExceeded):
        node.size_holdout("job-1")
    assert node.ledger.entries() == [] and not node.evaluation.sized("job-1")


def test_noisy_row_count_has_the_sizing_variance(tmp_path: Path) -> None:
    """The secure sampler cannot be seeded: 4,000 draws put the sample variance within 15 % (7 sd)."""
    evaluation = _node(tmp_path).evaluation
    draws = np.array([evaluation.noisy_rows(Fraction(400)) for _ in range(4000)], dtype=float) - ROWS
    assert abs(draws.mean()) < 7 * 20 / np.sqrt(4000)
    assert 0.85 * 400 < draws.var() < 1.15 * 400


def test_the_audit_log_carries_the_charge_but_never_the_count(tmp_path: Path) -> None:
    node = _node(tmp_path, audit=AuditLog(tmp_path / "audit.jsonl"))
    node.size_holdout("job-1")
    (detail,) = _sizings(node, "job-1")
    entries = read_entries(tmp_path / "audit.jsonl")
    assert sum(rho_charged_by_plan(tmp_path / "audit.jsonl").values()) == pytest.approx(node.ledger.spent())
    assert {e["event"] for e in entries} == {"charge", "size_holdout"}
    assert not any(str(detail["noisy_rows"]) in str(e.get("detail")) for e in entries)
    assert not any("noisy_rows" in str(e) for e in entries)


def test_a_failing_count_reveals_no_value_and_charges_nothing(tmp_path: Path) -> None:
    node = _node(tmp_path)

    def broken() -> np.ndarray:
        raise ValueError("row 17 has income 987654")

    node.evaluation.codes = broken  # type: ignore[method-assign]
    with pytest.raises(ProtocolAbort) as raised:
        node.size_holdout("job-1")
    assert "987654" not in raised.value.public_message() and "17" not in raised.value.public_message()
    assert node.ledger.entries() == [] and not node.evaluation.sized("job-1")


def test_the_counted_part_moves_by_one_record_between_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the party's real reading and encoding path (`PartyEvaluation.noisy_rows`, noise set to 0):
    adding or removing any one record, also a duplicate or one with empty cells, moves the count by 1."""
    import cleanroom.noise

    monkeypatch.setattr(cleanroom.noise, "sample_discrete_gaussian", lambda sigma2, size: np.zeros(size, int))
    schema_dict, frame, _, _ = demo_dataset(ROWS, seed=3)
    schema = Schema.from_dict(schema_dict)
    blank = frame.iloc[[0]].copy()
    blank.iloc[0, 1:] = None
    neighbours = {
        "removed": frame.drop(index=frame.index[5]),
        "duplicate added": pd.concat([frame, frame.iloc[[7]]], ignore_index=True),
        "empty cells added": pd.concat([frame, blank], ignore_index=True),
    }

    def exact(rows: pd.DataFrame, where: str) -> int:
        source = FrameSource(rows.reset_index(drop=True), schema, rules_from_schema(schema), name=where)
        config = SimpleNamespace(party_id="p1", ledger=tmp_path / where / "ledger.sqlite")
        plan = SimpleNamespace(hash="ab" * 32, data_parties=(1, 2, 3))
        evaluation = party_evaluation(config, plan, schema, source, IDENTITY)  # type: ignore[arg-type]
        return evaluation.noisy_rows(Fraction(400))

    base = exact(frame, "base")
    assert base == ROWS
    for label, rows in neighbours.items():
        assert abs(exact(rows, label) - base) == 1, label
