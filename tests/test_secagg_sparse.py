"""The sparse masking graph (SecAgg+): graph math, exact sums with dropouts, forged neighbourhoods refused.

Parties pair masks and share secrets only with their k neighbours in a Harary graph derived from the session
id and the roster; every party recomputes its neighbourhood and refuses what does not fit it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cleanroom.errors import InvalidInput, ProtocolAbort
from cleanroom.plan import Plan
from cleanroom.secagg.graph import is_connected, masking_graph
from cleanroom.secagg.local import LocalRound, make_test_collaboration
from cleanroom.secagg.manifest import (
    SecAggManifest,
    required_threshold,
    sparse_degree,
    sparse_feasible,
)
from cleanroom.secagg.messages import (
    ConsistencyCheckRequest,
    EncryptedShares,
    MaskedInputRequest,
    ShareKeysRequest,
    Stage,
    UnmaskRequest,
)
from cleanroom.secagg.transcript import signature_valid, survivors_transcript
from tests.governance_fixtures import write_plan
from tests.node_fixtures import build_collaboration
from tests.round_driver import round_sid
from tests.test_party_rounds import CLIQUES, exact_sum

SID = bytes(range(32))
PARTIES = tuple(f"p{i:02d}" for i in range(12))


def _sparse(n: int = 12, k: int = 4, missing: int = 2) -> tuple[SecAggManifest, dict[str, Any]]:
    """n parties, degree k, at most `missing` parties lost (quorum n - missing)."""
    return make_test_collaboration(n, min_parties=n - missing, neighbours=k)


def _inputs(parties: tuple[str, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {p: rng.integers(-(2**40), 2**40, size=7) for p in parties}


def _sum(inputs: dict[str, np.ndarray], parties: tuple[str, ...]) -> list[int]:
    return [int(v) for v in sum(inputs[p] for p in parties)]


# ---------------------------------------------------------------- graph math


def test_the_graph_is_a_function_of_sid_and_roster() -> None:
    graph = masking_graph(SID, PARTIES, 4)
    again = masking_graph(SID, PARTIES, 4)
    assert again.ring == graph.ring and again.digest == graph.digest
    assert dict(again.neighbours) == dict(graph.neighbours)
    other_sid = masking_graph(bytes(32), PARTIES, 4)
    assert other_sid.ring != graph.ring and other_sid.digest != graph.digest
    renamed = masking_graph(SID, (*PARTIES[:-1], "p99"), 4)
    assert renamed.ring != graph.ring and renamed.digest != graph.digest
    assert masking_graph(SID, PARTIES, 6).digest != graph.digest


@pytest.mark.parametrize(("n", "k"), [(5, 2), (9, 4), (12, 4), (13, 6), (50, 6), (51, 8)])
def test_the_sparse_graph_is_k_regular_and_symmetric(n: int, k: int) -> None:
    parties = tuple(f"q{i}" for i in range(n))
    graph = masking_graph(SID, parties, k)
    assert not graph.complete and graph.degree == k
    for p in parties:
        assert len(graph.neighbours[p]) == k and p not in graph.neighbours[p]
        assert all(graph.adjacent(q, p) for q in graph.neighbours[p])
    assert sum(len(v) for v in graph.neighbours.values()) == n * k


@pytest.mark.parametrize("k", [2, 4, 6])
def test_the_harary_graph_has_vertex_connectivity_exactly_k(k: int) -> None:
    graph = masking_graph(SID, PARTIES[:11], k)
    for removed in itertools.combinations(graph.parties, k - 1):
        assert is_connected(graph, set(removed)), removed
    # removing the k neighbours of any party cuts it off
    for p in graph.parties:
        assert not is_connected(graph, set(graph.neighbours[p]))


def test_degree_zero_or_n_minus_one_is_the_complete_graph() -> None:
    for degree in (0, 11, 40):
        graph = masking_graph(SID, PARTIES, degree)
        assert graph.complete and graph.degree == 11 and graph.ring == PARTIES
        assert all(graph.closed(p) == set(PARTIES) for p in PARTIES)


@pytest.mark.parametrize("degree", [1, 3, 5])
def test_odd_sparse_degrees_are_refused(degree: int) -> None:
    with pytest.raises(InvalidInput, match=rf"sparse masking degree \({degree}\) must be even and >= 2"):
        masking_graph(SID, PARTIES, degree)


def test_manifest_validates_the_sparse_parameters() -> None:
    with pytest.raises(
        InvalidInput, match=r"neighbours \(3\) must be 0 \(complete graph\) or even in \[2, n - 2"
    ):
        make_test_collaboration(12, neighbours=3)
    with pytest.raises(InvalidInput, match=r"neighbours \(11\) must be 0"):
        make_test_collaboration(12, neighbours=11)
    with pytest.raises(InvalidInput, match=r"neighbour_threshold \(2\) must be in \(\(k \+ 1\)/2, k \+ 1\]"):
        make_test_collaboration(12, neighbours=4, neighbour_threshold=2)
    with pytest.raises(InvalidInput, match="neighbour_threshold is only for a sparse graph"):
        make_test_collaboration(12, neighbour_threshold=3)
    with pytest.raises(InvalidInput, match=r"neighbours \(4\) must be >= 10 when n - quorum = 5 parties"):
        make_test_collaboration(12, neighbours=4)  # quorum t = 7: 5 parties may be lost
    manifest, _ = _sparse()
    assert (manifest.share_threshold, manifest.quorum, manifest.neighbour_quorum) == (3, 10, 3)
    assert manifest.max_colluders == 0  # min(2t - n - 1 = 1, t_k - 1 = 2, k - 2 x missing = 0)
    wider, _ = _sparse(n=14, k=6, missing=1)
    assert wider.max_colluders == 1  # min(2t - n - 1 = 1, t_k - 1 = 3, k - 2 x missing = 4)


def test_default_degree_is_sparse_from_nine_parties_and_grows_with_the_tolerances() -> None:
    for dropouts in (0, 1):
        assert [sparse_degree(n, dropouts, 0) for n in range(2, 9)] == [0] * 7
        assert all(sparse_degree(n, dropouts, 0) for n in range(9, 300))
    assert [sparse_degree(n, 1, 0) for n in (9, 20, 50, 100, 1000)] == [4, 6, 6, 8, 10]
    assert sparse_degree(50, 3, 2) == 8 and sparse_degree(50, 10, 10) == 0


@pytest.mark.parametrize("n", [9, 12, 20, 33, 50])
def test_default_degree_keeps_the_plans_tolerances(n: int) -> None:
    for dropouts, colluders in itertools.product(range(4), range(3)):
        k = sparse_degree(n, dropouts, colluders)
        if not k:
            continue
        assert sparse_feasible(k, dropouts, colluders) and 2 * k <= n - 1
        assert k >= colluders + max(2 * dropouts, dropouts + 1)  # no party can be isolated (docs/secagg.md)
        ids = tuple(f"q{i}" for i in range(n))
        manifest = dataclasses.replace(
            make_test_collaboration(n)[0],
            parties=ids,
            threshold=required_threshold(n, colluders),
            min_parties=n - dropouts,
            neighbours=k,
            neighbour_threshold=required_threshold(k + 1, colluders),
        )
        assert manifest.missing_allowed <= dropouts
        assert manifest.max_colluders >= colluders, (n, dropouts, colluders, k)
        assert manifest.share_threshold <= k + 1 - dropouts  # every secret keeps t_k live holders


# ---------------------------------------------------------------- sums and tolerance


def test_sparse_round_sums_exactly_and_sends_only_to_neighbours() -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys)
    inputs = _inputs(manifest.parties)
    result = local.run(inputs)
    assert [int(v) for v in result.total] == _sum(inputs, manifest.parties)
    graph = manifest.masking_graph(local.sid)
    for p in manifest.parties:
        shares = local.responses[p][Stage.SHARE_KEYS].shares
        assert {item.recipient for item in shares} == graph.neighbours[p] and len(shares) == 4
        unmask = local.responses[p][Stage.UNMASK]
        assert {s.subject for s in unmask.seed_shares} == graph.closed(p) and unmask.key_shares == ()


def _neighbours_of(manifest: SecAggManifest, local: LocalRound, party: str) -> list[str]:
    return sorted(manifest.masking_graph(local.sid).neighbours[party])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Stage.SHARE_KEYS, Stage.SHARE_KEYS),
        (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS),
        (Stage.MASKED_INPUT, Stage.SHARE_KEYS),
        (Stage.MASKED_INPUT, Stage.CONSISTENCY_CHECK),
    ],
)
def test_two_adjacent_dropouts_within_tolerance_still_sum_exactly(first: Stage, second: Stage) -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys, round_number=3)
    a = "p05"
    b = _neighbours_of(manifest, local, a)[0]
    inputs = _inputs(manifest.parties)
    result = local.run(inputs, drop_after={a: first, b: second})
    in_sum = {p for p, s in ((a, first), (b, second)) if s in (Stage.MASKED_INPUT, Stage.CONSISTENCY_CHECK)}
    survivors = tuple(p for p in manifest.parties if p not in {a, b} or p in in_sum)
    assert result.survivors == survivors
    assert [int(v) for v in result.total] == _sum(inputs, survivors)
    if first is Stage.SHARE_KEYS:
        assert local.server is not None and set(local.server.recovered_mask_keys) == {a, b}


def test_a_party_that_never_shows_up_is_a_tolerated_dropout() -> None:
    manifest, keys = _sparse()
    online = {p: key for p, key in keys.items() if p != "p07"}
    inputs = _inputs(tuple(online))
    result = LocalRound(manifest, online).run(inputs)
    assert [int(v) for v in result.total] == _sum(inputs, tuple(online))


def test_three_dropouts_beyond_tolerance_abort_without_output() -> None:
    manifest, keys = _sparse()  # at most 2 parties may be lost
    local = LocalRound(manifest, keys)
    drops = {p: Stage.SHARE_KEYS for p in ("p01", "p02", "p03")}
    with pytest.raises(ProtocolAbort, match="MaskedInput: round aborted.*only 9 parties sent masked input"):
        local.run(_inputs(manifest.parties), drop_after=drops)
    assert local.server is not None and local.server.aborted
    assert all(Stage.UNMASK not in sent for sent in local.responses.values())


@pytest.mark.adversary
def test_withholding_neighbours_shares_beyond_tolerance_is_refused_by_the_party() -> None:
    manifest, keys = _sparse()  # p00 needs 3 of its closed neighbourhood (5) in its U2
    local = LocalRound(manifest, keys)
    withheld = set(_neighbours_of(manifest, local, "p00")[:3])

    def withhold(request: MaskedInputRequest) -> MaskedInputRequest:
        return dataclasses.replace(
            request, shares=tuple(i for i in request.shares if i.sender not in withheld)
        )

    with pytest.raises(
        ProtocolAbort,
        match=r"MaskedInput: party p00 aborts .*only 2 parties shared keys of this party's neighbourhood",
    ):
        local.run(_inputs(manifest.parties), tamper=_tamper(MaskedInputRequest, "p00", withhold))
    assert Stage.MASKED_INPUT not in local.responses["p00"]


def test_sparse_bytes_per_party_do_not_grow_with_n() -> None:
    sizes = {}
    for n in (20, 40):
        manifest, keys = make_test_collaboration(n, min_parties=n - 1, neighbours=6)
        result = LocalRound(manifest, keys).run({p: np.zeros(4, dtype=np.int64) for p in manifest.parties})
        sent = result.party_bytes["p00"]
        sizes[n] = sent[Stage.SHARE_KEYS] + sent[Stage.UNMASK]
    dense, keys = make_test_collaboration(20, min_parties=19)
    result = LocalRound(dense, keys).run({p: np.zeros(4, dtype=np.int64) for p in dense.parties})
    dense_size = result.party_bytes["p00"][Stage.SHARE_KEYS] + result.party_bytes["p00"][Stage.UNMASK]
    assert sizes[20] == sizes[40] < dense_size / 2


# ---------------------------------------------------------------- forged neighbourhoods


def _tamper(kind: type, party: str, change: Any) -> Any:
    def tamper(to: str, request: Any) -> Any:
        return change(request) if to == party and isinstance(request, kind) else request

    return tamper


def _stranger(manifest: SecAggManifest, local: LocalRound, party: str) -> str:
    graph = manifest.masking_graph(local.sid)
    return next(p for p in manifest.parties if p not in graph.closed(party))


@pytest.mark.adversary
def test_an_advert_from_a_non_neighbour_is_refused() -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys)
    stranger = _stranger(manifest, local, "p00")

    def add_stranger(request: ShareKeysRequest) -> ShareKeysRequest:
        advert = local.responses[stranger][Stage.ADVERTISE_KEYS]  # genuine and correctly signed
        return dataclasses.replace(request, adverts=(*request.adverts, advert))

    with pytest.raises(
        ProtocolAbort, match=rf"ShareKeys: party p00 aborts .*party {stranger}, not a neighbour"
    ):
        local.run(_inputs(manifest.parties), tamper=_tamper(ShareKeysRequest, "p00", add_stranger))
    assert all(Stage.UNMASK not in sent for sent in local.responses.values())


@pytest.mark.adversary
def test_hiding_neighbours_beyond_tolerance_is_refused() -> None:
    manifest, keys = _sparse()  # neighbourhood quorum 3 of the 5 in p00's closed neighbourhood
    local = LocalRound(manifest, keys)
    hidden = set(_neighbours_of(manifest, local, "p00")[:3])

    def hide(request: ShareKeysRequest) -> ShareKeysRequest:
        return dataclasses.replace(
            request, adverts=tuple(a for a in request.adverts if a.sender not in hidden)
        )

    with pytest.raises(
        ProtocolAbort,
        match=r"ShareKeys: party p00 aborts .*only 2 parties advertised keys of this party's neighbourhood",
    ):
        local.run(_inputs(manifest.parties), tamper=_tamper(ShareKeysRequest, "p00", hide))


@pytest.mark.adversary
def test_shares_from_a_non_neighbour_are_refused() -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys)
    stranger = _stranger(manifest, local, "p00")

    def add_shares(request: MaskedInputRequest) -> MaskedInputRequest:
        forged = EncryptedShares(stranger, "p00", os.urandom(176))
        return dataclasses.replace(request, shares=(*request.shares, forged))

    with pytest.raises(
        ProtocolAbort, match=rf"MaskedInput: party p00 aborts .*shares from party '{stranger}'"
    ):
        local.run(_inputs(manifest.parties), tamper=_tamper(MaskedInputRequest, "p00", add_shares))


@pytest.mark.adversary
def test_a_survivor_list_naming_a_neighbour_without_shares_is_refused() -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys)
    absent = _neighbours_of(manifest, local, "p00")[0]  # advertises, then never shares its keys

    def add_absent(request: ConsistencyCheckRequest) -> ConsistencyCheckRequest:
        listed = tuple(sorted((*request.survivors, absent), key=manifest.index))
        return dataclasses.replace(request, survivors=listed)

    with pytest.raises(ProtocolAbort, match="ConsistencyCheck: party p00 aborts .*is not a subset of U2"):
        local.run(
            _inputs(manifest.parties),
            drop_after={absent: Stage.ADVERTISE_KEYS},
            tamper=_tamper(ConsistencyCheckRequest, "p00", add_absent),
        )


@pytest.mark.adversary
@pytest.mark.parametrize("field", ["reveal_seed_for", "reveal_key_for"])
def test_asking_for_shares_of_a_non_neighbour_is_refused(field: str) -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys)
    stranger = _stranger(manifest, local, "p00")

    def ask_more(request: UnmaskRequest) -> UnmaskRequest:
        subjects = tuple(sorted((*getattr(request, field), stranger), key=manifest.index))
        return dataclasses.replace(request, **{field: subjects})

    kind = "seed" if field == "reveal_seed_for" else "key"
    with pytest.raises(ProtocolAbort, match=rf"Unmask: party p00 aborts .*{kind} shares asked for"):
        local.run(_inputs(manifest.parties), tamper=_tamper(UnmaskRequest, "p00", ask_more))
    assert Stage.UNMASK not in local.responses["p00"]


@pytest.mark.adversary
def test_the_survivor_signature_binds_the_graph() -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys)
    result = local.run(_inputs(manifest.parties))
    graph = manifest.masking_graph(local.sid)
    signature = local.responses["p03"][Stage.CONSISTENCY_CHECK].signature
    public = manifest.identity_key("p03")
    assert signature_valid(public, signature, survivors_transcript(local.sid, result.survivors, graph.digest))
    assert not signature_valid(public, signature, survivors_transcript(local.sid, result.survivors))
    other = masking_graph(local.sid, manifest.parties, 6)
    assert not signature_valid(
        public, signature, survivors_transcript(local.sid, result.survivors, other.digest)
    )


@pytest.mark.adversary
def test_parties_that_disagree_on_the_graph_abort_before_masking() -> None:
    manifest, keys = _sparse()
    local = LocalRound(manifest, keys)
    other = dataclasses.replace(manifest, neighbours=6, neighbour_threshold=0)
    local.parties["p04"] = type(local.parties["p04"])(other, "p04", keys["p04"], local.sid)
    with pytest.raises(ProtocolAbort, match="ShareKeys|MaskedInput"):
        local.run(_inputs(manifest.parties))
    assert all(Stage.MASKED_INPUT not in sent for sent in local.responses.values())


# ---------------------------------------------------------------- plan and party nodes


def test_plan_picks_the_sparse_graph_and_checks_explicit_degrees(tmp_path: Path) -> None:
    def plan(n: int, **overrides: str) -> Plan:
        folder = tmp_path / f"{n}-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        return Plan.load(write_plan(folder, n, {"min_parties": "2", **overrides}).path)

    assert plan(3).masking_degree == 0 and plan(8).masking_degree == 0
    nine = plan(9)
    assert nine.masking_degree == 4 and "sparse: 4 neighbours" in nine.describe()
    manifest = nine.secagg_manifest(nine.schema_hash)
    assert manifest.sparse and manifest.max_colluders >= nine.colluders and manifest.missing_allowed == 1
    assert plan(5, masking_neighbours="2").masking_degree == 2
    assert plan(12, masking_neighbours="11").masking_degree == 0
    assert plan(12, colluders="2", threshold="0").masking_degree == 4
    # tolerances the sparse graph cannot meet at this size fall back to the complete graph
    assert plan(12, dropout_tolerance="3", colluders="3").masking_degree == 0
    wide = plan(24, dropout_tolerance="3", colluders="3")
    assert wide.masking_degree == 10 and wide.secagg_manifest(wide.schema_hash).max_colluders >= 3
    with pytest.raises(InvalidInput, match=r"masking_neighbours \(2\) must be even, >= 3 \(colluders 1"):
        plan(12, colluders="1", masking_neighbours="2")
    with pytest.raises(InvalidInput, match=r"masking_neighbours \(3\) must be even"):
        plan(12, masking_neighbours="3")


@pytest.mark.adversary
def test_party_nodes_run_a_sparse_round_and_refuse_a_forged_neighbourhood(tmp_path: Path) -> None:
    collab = build_collaboration(tmp_path, n_parties=9)
    manifest = collab.manifest
    assert manifest.neighbours == 4
    collab.hello("j")
    spec = collab.request("j", 0)
    outcome = collab.run(spec)
    assert outcome.aborted is None and outcome.survivors == manifest.parties
    exact = exact_sum(collab, list(manifest.parties), CLIQUES)
    assert np.all(np.abs(outcome.total - exact) < 6 * np.sqrt(9 * 400)) and not np.array_equal(
        outcome.total, exact
    )
    sid = round_sid(manifest, collab.plan.hash, collab.request("j", 1))
    stranger = next(p for p in manifest.parties if p not in manifest.masking_graph(sid).closed("p0"))
    seen: dict[str, dict[str, Any]] = {}

    def forge(party: str, stage: str, request: Any) -> Any:
        if party == "p0" and stage == "ShareKeys":
            advert = seen["AdvertiseKeys"][stranger]
            return dataclasses.replace(request, adverts=(*request.adverts, advert))
        return request

    second = collab.run(collab.request("j", 1), tamper=forge, transcript=seen)
    assert isinstance(second.errors["p0"], ProtocolAbort)
    assert "not a neighbour" in str(second.errors["p0"])
    assert second.aborted is None and second.survivors == manifest.parties[1:]  # one tolerated dropout
    exact = exact_sum(collab, list(second.survivors), CLIQUES)
    # eight shares of variance 400 per cell: |noise| < 6 sd with overwhelming probability
    assert np.all(np.abs(second.total - exact) < 6 * np.sqrt(8 * 400))
