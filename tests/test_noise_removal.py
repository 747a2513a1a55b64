"""Noise drawn for tolerated dropouts comes back out of a sum nobody dropped out of (`NoiseLayout`).

Each party's noise is `shares` equal draws; after the survivor list is signed by a quorum, each survivor
reveals the draws that list does not need. The tests check the layout's arithmetic for every small plan, then
run rounds through real `PartyNode`s with their noise draws recorded (a seeded stand-in for the sampler), so
the decoded sum can be compared draw by draw: it must carry exactly the draws each survivor keeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import party.node as node_module
from cleanroom.accounting import MAX_NOISE_SHARES, DistributedGaussian, NoiseLayout, calibrate
from cleanroom.encoding import encode
from cleanroom.errors import InvalidInput
from cleanroom.marginals import count_tables, flatten_tables
from cleanroom.secagg.local import LocalRound, make_test_collaboration
from tests.node_fixtures import Collaboration, build_collaboration, sample_frame

CLIQUES = (("age",), ("income",), ("age", "income"))


def test_every_survivor_list_keeps_the_noise_the_round_was_charged_for() -> None:
    for n in range(1, 13):
        for d in range(n):
            for c in range(n - d):
                layout = NoiseLayout.for_plan(n, d, c)
                assert layout.n_min == n - d - c and layout.shares <= MAX_NOISE_SHARES
                for survivors in range(n - d, n + 1):
                    kept = layout.kept(survivors)
                    assert 1 <= kept <= layout.shares
                    assert (survivors - c) * kept >= layout.honest_shares, (n, d, c, survivors)
                if layout.shares > 1:  # a full list removes every spare draw: the noise of d = 0
                    assert (n - c) * layout.kept(n) == layout.honest_shares, (n, d, c)
    three = NoiseLayout.for_plan(3, 1, 0)
    assert (three.shares, three.kept(3), three.kept(2)) == (3, 2, 3)
    assert three.spread() == 1.0 and three.spread(2) == 1.0
    assert NoiseLayout.for_plan(3, 1, 0).summed_variance(Fraction(30), 3, 2) == pytest.approx(70.0)
    with pytest.raises(InvalidInput, match="survivors"):
        three.kept(1)  # below the quorum a round aborts: no list that short is ever honoured


def test_the_accounting_counts_every_draw_at_its_own_variance() -> None:
    layout = NoiseLayout.for_plan(3, 1, 0)
    total = calibrate(0.05, 2.0, layout.n_min, n_parties=3, dim=40, shares=layout.shares)
    noise = DistributedGaussian.of(total, layout)
    assert noise.sigma_share2 * 6 == total
    assert noise.rho(2.0 * 40**0.5, 2.0, 40) <= 0.05
    assert noise.rho(2.0 * 40**0.5, 2.0, 40) == pytest.approx(4 / (2 * float(total)), rel=1e-9)
    # a party's own draws when everyone else colludes and claims a full list: rho_local rises by 3/2
    assert noise.rho_local(kept=layout.kept(3)) == pytest.approx(1.5 * noise.rho_local())
    # at the floor a party's noise is the same (sigma_party^2 4, so 4/3 per draw) and tau is charged in full
    floor = calibrate(1e6, 1.0, 2, n_parties=3, shares=3)
    assert floor == calibrate(1e6, 1.0, 2, n_parties=3) + Fraction(6, 15_000)  # 4/3 rounded up, 6 draws
    at_floor = DistributedGaussian(floor, 3, 2, shares=3)
    direct = 10 * sum(np.exp(-2 * np.pi**2 * float(floor / 6) * k / (k + 1)) for k in range(1, 6))
    assert at_floor.tau() == pytest.approx(direct, rel=1e-12) and at_floor.tau() > 1e-6
    assert at_floor.rho(1, 1, 1000) > 1 / (2 * float(floor))  # the tau term is in the charge


@dataclasses.dataclass
class DrawRecorder:
    """Seeded integer draws in place of the sampler, remembered per party in draw order."""

    draws: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    current: str = ""
    rng: np.random.Generator = dataclasses.field(default_factory=lambda: np.random.default_rng(11))
    variance: Fraction = Fraction(400, 3)

    def __call__(self, size: int, sigma2: Fraction, draws: int) -> np.ndarray:
        assert (sigma2, draws) == (self.variance, 3), "each draw is a third of the party's noise variance"
        draw = self.rng.integers(-1000, 1000, size)
        self.draws.setdefault(self.current, []).append(draw)
        return draw


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Collaboration, DrawRecorder]]:
    collab = build_collaboration(tmp_path)  # three parties, dropout_tolerance 1: three draws each
    recorder = DrawRecorder()
    monkeypatch.setattr(node_module, "party_noise_share", recorder)
    for pid, node in collab.nodes.items():
        monkeypatch.setattr(node, "noised_vector", _recording(recorder, pid, node.noised_vector))
    collab.hello("j")
    yield collab, recorder


def _recording(recorder: DrawRecorder, pid: str, noised_vector: Any) -> Any:
    """The node's own noised_vector, telling the recorder whose draws follow."""

    def noised(state: object) -> np.ndarray:
        recorder.current = pid
        return noised_vector(state)  # type: ignore[no-any-return]

    return noised


def exact(collab: Collaboration, parties: list[str]) -> np.ndarray:
    domain = collab.schema.domain
    tables = [
        flatten_tables(count_tables(encode(collab.schema, collab.nodes[p].source.read_frame()).codes, domain,
                                    list(CLIQUES)))
        for p in parties
    ]  # fmt: skip
    return np.sum(tables, axis=0)


def kept_noise(recorder: DrawRecorder, kept: dict[str, int]) -> np.ndarray:
    return sum(np.sum(recorder.draws[p][:k], axis=0) for p, k in kept.items())


def test_a_round_nobody_drops_out_of_keeps_two_draws_of_each_party(
    recorded: tuple[Collaboration, DrawRecorder],
) -> None:
    collab, recorder = recorded
    outcome = collab.run(collab.request("j", 0))
    assert outcome.aborted is None and outcome.trimmed == ("p0", "p1", "p2")
    parties = ["p0", "p1", "p2"]
    noise = kept_noise(recorder, dict.fromkeys(parties, 2))
    assert np.array_equal(outcome.total, exact(collab, parties) + noise)
    for pid in parties:
        (entry,) = [e for e in collab.audit(pid) if e["event"] == "remove_noise"]
        assert entry["detail"] == {"survivors": 3, "draws_removed": 1, "draws_kept": 2}
        assert entry["noise_scale"] == pytest.approx((400 * 2 / 3) ** 0.5)


def test_a_party_lost_before_its_masked_input_leaves_the_others_all_their_draws(
    recorded: tuple[Collaboration, DrawRecorder],
) -> None:
    collab, recorder = recorded
    outcome = collab.run(collab.request("j", 0), parties=["p0", "p1"])
    assert outcome.aborted is None and outcome.survivors == ("p0", "p1") and outcome.trimmed == ()
    kept = {"p0": 3, "p1": 3}
    assert np.array_equal(outcome.total, exact(collab, ["p0", "p1"]) + kept_noise(recorder, kept))
    assert not [e for p in kept for e in collab.audit(p) if e["event"] == "remove_noise"]


def test_a_survivor_that_never_unmasks_keeps_its_draws_in_the_sum(
    recorded: tuple[Collaboration, DrawRecorder],
) -> None:
    collab, recorder = recorded

    def silent_p2(party: str, stage: str, request: object) -> object:
        if party == "p2" and stage == "Unmask":  # p2 refuses an unsigned list: it answers nothing
            return dataclasses.replace(request, signatures=())  # type: ignore[type-var]
        return request

    outcome = collab.run(collab.request("j", 0), tamper=silent_p2)
    assert outcome.aborted is None and outcome.survivors == ("p0", "p1", "p2")
    assert outcome.trimmed == ("p0", "p1") and "signatures" in str(outcome.errors["p2"])
    kept = {"p0": 2, "p1": 2, "p2": 3}
    parties = list(kept)
    assert np.array_equal(outcome.total, exact(collab, parties) + kept_noise(recorder, kept))
    layout = collab.plan.noise_layout
    assert layout.summed_variance(Fraction(400), 3, 2) == pytest.approx(400 / 3 * 7)


@pytest.mark.adversary
def test_a_forged_full_list_reveals_no_noise(recorded: tuple[Collaboration, DrawRecorder]) -> None:
    """The coordinator drops p2's masked input yet shows p0 a full list with p0's own signature only."""
    collab, _ = recorded
    signed: dict[str, object] = {}

    def forge(party: str, stage: str, request: object) -> object:
        if stage == "Unmask" and party == "p0":
            signed["p0"] = request
            return dataclasses.replace(
                request,  # type: ignore[type-var]
                survivors=("p0", "p1", "p2"),
                signatures=request.signatures[:1],  # type: ignore[attr-defined]
            )
        return request

    outcome = collab.run(collab.request("j", 0), parties=["p0", "p1"], tamper=forge)
    assert "p0" in outcome.errors and "survivor list" in str(outcome.errors["p0"])
    assert not [e for e in collab.audit("p0") if e["event"] == "remove_noise"]


@pytest.mark.adversary
def test_a_retried_unmask_reveals_the_same_draws_and_a_second_list_nothing(
    recorded: tuple[Collaboration, DrawRecorder],
) -> None:
    collab, _ = recorded
    sent: dict[str, object] = {}
    answers: dict[str, object] = {}

    def keep(party: str, stage: str, request: object) -> object:
        if stage == "Unmask":
            sent[party] = request
        return request

    outcome = collab.run(collab.request("j", 0), tamper=keep, transcript=answers)  # type: ignore[arg-type]
    assert outcome.aborted is None
    node = collab.nodes["p0"]
    first = answers["Unmask"]["p0"]  # type: ignore[index]
    again = node.unmask(sent["p0"])
    assert again == first and again.removed_noise  # the identical bytes: no fresh draw, no second reveal
    shorter = dataclasses.replace(sent["p0"], survivors=("p0", "p1"))  # type: ignore[type-var]
    with pytest.raises(Exception, match="state done|next allowed: none"):
        node.unmask(shorter)
    assert len([e for e in collab.audit("p0") if e["event"] == "remove_noise"]) == 1


def test_without_dropout_tolerance_one_draw_and_nothing_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = {f"p{i}": sample_frame(60, seed=i) for i in range(3)}
    collab = build_collaboration(tmp_path, frames, {"dropout_tolerance": "0", "min_parties": "3"})
    assert collab.plan.noise_layout.shares == 1
    calls: list[Fraction] = []
    real = node_module.party_noise_share

    def counting(size: int, sigma2: Fraction, draws: int) -> np.ndarray:
        calls.append(sigma2)
        return real(size, sigma2, draws)

    monkeypatch.setattr(node_module, "party_noise_share", counting)
    collab.hello("j")
    outcome = collab.run(collab.request("j", 0))
    assert outcome.aborted is None and outcome.trimmed == () and calls == [Fraction(400)] * 3


@pytest.mark.adversary
def test_the_server_takes_out_only_well_formed_removals_of_the_survivors() -> None:
    manifest, keys = make_test_collaboration(3, min_parties=2)
    inputs = {p: np.full(4, 10 * (i + 1), dtype=np.int64) for i, p in enumerate(keys)}
    removals = {p: (lambda survivors: np.ones(4, dtype=np.int64)) for p in keys}
    local = LocalRound(manifest, keys)

    def short_p1(party: str, response: object) -> object:
        if party == "p01" and getattr(response, "removed_noise", b""):
            return dataclasses.replace(response, removed_noise=b"\x00" * 8)  # type: ignore[type-var]
        return response

    result = local.run(inputs, removals=removals, tamper_response=short_p1)
    assert result.trimmed == ("p00", "p02")
    assert "removed noise" in local.server.rejected["p01"]  # type: ignore[union-attr]
    assert np.array_equal(result.total, np.full(4, 60 - 2))


@pytest.mark.parametrize(("lost", "kept"), [((), 2), (("p5",), 3), (("p4", "p5"), 3)])
def test_six_parties_tolerating_two_dropouts_keep_what_their_survivor_list_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost: tuple[str, ...], kept: int
) -> None:
    """(n - c) / gcd(n - c, d) = 3 draws of which a full list keeps ceil(3 x 4 / 6) = 2, fewer than n_min."""
    collab = build_collaboration(tmp_path, overrides={"dropout_tolerance": "2"}, n_parties=6)
    layout = collab.plan.noise_layout
    assert (layout.n_min, layout.shares, layout.kept(6), layout.kept(5), layout.kept(4)) == (4, 3, 2, 3, 3)
    recorder = DrawRecorder(variance=Fraction(400, 3))
    monkeypatch.setattr(node_module, "party_noise_share", recorder)
    for pid, node in collab.nodes.items():
        monkeypatch.setattr(node, "noised_vector", _recording(recorder, pid, node.noised_vector))
    collab.hello("j")
    parties = [p for p in collab.nodes if p not in lost]
    outcome = collab.run(collab.request("j", 0), parties=parties)
    assert outcome.aborted is None and outcome.survivors == tuple(parties)
    assert outcome.trimmed == (tuple(parties) if kept < 3 else ())
    noise = kept_noise(recorder, dict.fromkeys(parties, kept))
    assert np.array_equal(outcome.total, exact(collab, parties) + noise)
