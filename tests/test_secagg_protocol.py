"""End-to-end secure aggregation rounds: cancellation, dropouts, uniformity, stragglers, manifest rules."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from scipy import stats

from cleanroom.errors import InvalidInput, PreconditionFailed, ProtocolAbort
from cleanroom.secagg import math as sm
from cleanroom.secagg.local import LocalRound, make_test_collaboration, run_local_round
from cleanroom.secagg.manifest import SecAggManifest, required_threshold, session_id
from cleanroom.secagg.messages import MaskedInput, RevealedShare, Stage, UnmaskResponse
from cleanroom.secagg.reveal import MemoryRevealRecord, ShareKind

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _exact_sum(inputs: dict[str, np.ndarray], parties: list[str] | tuple[str, ...]) -> list[int]:
    columns = zip(*(inputs[p].tolist() for p in parties), strict=True)
    return [sum(column) for column in columns]


def _near_limit_inputs(parties: tuple[str, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-party vectors whose exact sum is at or next to the int64 limits (and random elsewhere)."""
    n = len(parties)
    targets = [INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, 0]
    targets += [int(v) for v in rng.integers(INT64_MIN // 2, INT64_MAX // 2, size=3)]
    parts = np.zeros((n, len(targets)), dtype=object)
    for j, target in enumerate(targets):
        base, remainder = divmod(target, n)
        jitter = [int(v) for v in rng.integers(-(2**40), 2**40, size=n)]
        jitter[-1] -= sum(jitter)  # keeps the column total
        for i in range(n):
            parts[i, j] = base + (remainder if i == 0 else 0) + jitter[i]
    return {p: np.array([int(v) for v in parts[i]], dtype=np.int64) for i, p in enumerate(parties)}


@pytest.mark.parametrize("n", [2, 3, 10, 50])
def test_masks_cancel_exactly(n: int) -> None:
    rng = np.random.default_rng(n)
    manifest, keys = make_test_collaboration(n)
    inputs = {p: rng.integers(-(10**6), 10**6, size=12) for p in manifest.parties}
    result = run_local_round(manifest, keys, inputs)
    assert result.total.dtype == np.int64
    assert result.total.tolist() == _exact_sum(inputs, manifest.parties)
    assert result.survivors == manifest.parties and result.dropped == ()


@pytest.mark.parametrize("n", [2, 3, 10, 50])
def test_sums_near_the_int64_limits_are_exact(n: int) -> None:
    manifest, keys = make_test_collaboration(n)
    inputs = _near_limit_inputs(manifest.parties, np.random.default_rng(100 + n))
    expected = _exact_sum(inputs, manifest.parties)
    assert expected[:2] == [INT64_MAX, INT64_MIN]
    assert run_local_round(manifest, keys, inputs).total.tolist() == expected


def test_dropout_after_share_keys_sums_the_survivors() -> None:
    manifest, keys = make_test_collaboration(7)  # t = 4
    rng = np.random.default_rng(1)
    inputs = {p: rng.integers(-1000, 1000, size=30) for p in manifest.parties}
    drops = {"p01": Stage.SHARE_KEYS, "p04": Stage.SHARE_KEYS, "p06": Stage.ADVERTISE_KEYS}
    result = run_local_round(manifest, keys, inputs, drop_after=drops)
    survivors = ("p00", "p02", "p03", "p05")
    assert result.survivors == survivors
    assert result.dropped == ("p01", "p04")  # p06 never shared keys, so no mask to remove
    assert result.total.tolist() == _exact_sum(inputs, survivors)


def test_many_dropouts_with_fifty_parties() -> None:
    manifest, keys = make_test_collaboration(50)
    rng = np.random.default_rng(2)
    inputs = {p: rng.integers(-(2**40), 2**40, size=8) for p in manifest.parties}
    drops = {p: Stage.SHARE_KEYS for p in manifest.parties[::5]}  # 10 parties
    result = run_local_round(manifest, keys, inputs, drop_after=drops)
    survivors = tuple(p for p in manifest.parties if p not in drops)
    assert result.survivors == survivors
    assert result.total.tolist() == _exact_sum(inputs, survivors)


def test_fewer_than_t_survivors_abort_without_output() -> None:
    manifest, keys = make_test_collaboration(5)  # t = 3
    inputs = {p: np.arange(4) for p in manifest.parties}
    drops = {p: Stage.SHARE_KEYS for p in ("p00", "p01", "p02")}
    local = LocalRound(manifest, keys)
    with pytest.raises(ProtocolAbort, match="MaskedInput: .*only 2 parties sent masked input"):
        local.run(inputs, drop_after=drops)
    assert local.server is not None
    with pytest.raises(ProtocolAbort, match="no result"):
        local.server.result()
    assert all(Stage.CONSISTENCY_CHECK not in sent for sent in local.responses.values())


def test_too_few_signers_abort_before_any_share_is_revealed() -> None:
    manifest, keys = make_test_collaboration(5)
    inputs = {p: np.arange(4) for p in manifest.parties}
    drops = {p: Stage.MASKED_INPUT for p in ("p00", "p01", "p02")}
    local = LocalRound(manifest, keys)
    with pytest.raises(ProtocolAbort, match="ConsistencyCheck: .*only 2 parties signed"):
        local.run(inputs, drop_after=drops)
    assert all(Stage.UNMASK not in sent for sent in local.responses.values())


def test_dropout_after_masked_input_keeps_that_input() -> None:
    manifest, keys = make_test_collaboration(5)
    rng = np.random.default_rng(3)
    inputs = {p: rng.integers(-1000, 1000, size=16) for p in manifest.parties}
    local = LocalRound(manifest, keys)
    result = local.run(inputs, drop_after={"p03": Stage.MASKED_INPUT, "p04": Stage.CONSISTENCY_CHECK})
    assert result.survivors == manifest.parties
    assert result.total.tolist() == _exact_sum(inputs, manifest.parties)
    assert Stage.UNMASK not in local.responses["p03"] and Stage.UNMASK not in local.responses["p04"]


def _byte_uniformity_pvalue(data: bytes) -> float:
    """Smallest Bonferroni-corrected chi-square p-value over the 8 byte positions of each uint64."""
    columns = np.frombuffer(data, dtype=np.uint8).reshape(-1, 8)
    pvalues = [stats.chisquare(np.bincount(columns[:, k], minlength=256)).pvalue for k in range(8)]
    return float(min(pvalues) * 8)


def test_a_masked_vector_is_indistinguishable_from_uniform() -> None:
    manifest, keys = make_test_collaboration(3)
    cells = 2**15
    inputs = {p: np.full(cells, 7, dtype=np.int64) for p in manifest.parties}  # highly structured input
    local = LocalRound(manifest, keys)
    local.run(inputs)
    masked = local.responses["p01"][Stage.MASKED_INPUT].vector
    assert _byte_uniformity_pvalue(masked) > 1e-4
    # the same test flags the unmasked input, and a vector masked only with a weak 16-bit mask
    raw = sm.vector_to_bytes(sm.encode_int64(inputs["p01"]))
    assert _byte_uniformity_pvalue(raw) < 1e-10
    weak_mask = np.random.default_rng(4).integers(0, 2**16, cells, dtype=np.uint64)
    weak = sm.encode_int64(inputs["p01"]) + weak_mask
    assert _byte_uniformity_pvalue(sm.vector_to_bytes(weak)) < 1e-10


def test_late_straggler_stays_hidden_by_its_self_mask() -> None:
    manifest, keys = make_test_collaboration(5)
    cells = 4096
    rng = np.random.default_rng(5)
    inputs = {p: rng.integers(0, 50, size=cells) for p in manifest.parties}
    records = {p: MemoryRevealRecord() for p in manifest.parties}
    local = LocalRound(manifest, keys, reveal_records=records)
    result = local.run(inputs, late={"p02"})
    others = tuple(p for p in manifest.parties if p != "p02")
    assert result.survivors == others and result.dropped == ("p02",)
    assert result.total.tolist() == _exact_sum(inputs, others)
    assert all(records[p].kinds(local.sid)["p02"] is ShareKind.KEY for p in others)
    # The coordinator now holds p02's late masked vector AND its masking key: strip every pairwise mask.
    assert local.server is not None
    masking_key = sm.x25519_from_private_bytes(local.server.recovered_mask_keys["p02"], what="p02")
    late = sm.vector_from_bytes(local.late_messages["p02"].vector, cells, what="p02")
    for peer in others:
        peer_public = local.responses[peer][Stage.ADVERTISE_KEYS].mask_public
        shared = sm.x25519_shared(masking_key, peer_public, what=peer)
        pair = sm.pair_key(shared, local.sid, sm.PURPOSE_PAIR_MASK, "p02", peer)
        sm.add_prg(late, pair, -1 if peer > "p02" else +1)
    own = sm.encode_int64(inputs["p02"])
    assert not np.array_equal(late, own)
    assert _byte_uniformity_pvalue(sm.vector_to_bytes(late)) > 1e-4
    # what remains is exactly input + self mask: the stripping was right and b_u alone hides the input
    seed = local.parties["p02"].private_seed_for_tests()
    sm.add_prg(late, sm.self_mask_key(seed, local.sid, "p02"), -1)
    assert np.array_equal(late, own)


def test_a_malformed_vector_is_its_senders_dropout_and_the_round_goes_on() -> None:
    manifest, keys = make_test_collaboration(3)

    def truncate(party: str, response: object) -> object:
        if party == "p01" and isinstance(response, MaskedInput):
            return dataclasses.replace(response, vector=response.vector[:-8])
        return response

    # a malformed answer is that party's dropout: the round goes on while the quorum holds
    local = LocalRound(manifest, keys)
    inputs = {p: np.arange(4) * (i + 1) for i, p in enumerate(manifest.parties)}
    result = local.run(inputs, tamper_response=truncate)
    assert result.survivors == ("p00", "p02") and result.dropped == ("p01",)
    assert np.array_equal(result.total, inputs["p00"] + inputs["p02"])
    assert local.server is not None and "24 bytes, expected 32" in local.server.rejected["p01"]
    # below the quorum it aborts, with nothing released
    manifest, keys = make_test_collaboration(3, min_parties=3)
    local = LocalRound(manifest, keys)
    with pytest.raises(ProtocolAbort, match="MaskedInput: .*only 2 parties sent masked input; at least 3"):
        local.run(inputs, tamper_response=truncate)


def _corrupt_seed_share_of_p02(corrupt: Any) -> Any:
    def corrupt_shares(party: str, response: object) -> object:
        if party == "p00" and isinstance(response, UnmaskResponse):
            shares = tuple(
                RevealedShare(s.subject, corrupt(s.share) if s.subject == "p02" else s.share)
                for s in response.seed_shares
            )
            return dataclasses.replace(response, seed_shares=shares)
        return response

    return corrupt_shares


def test_malformed_revealed_share_drops_only_its_sender() -> None:
    manifest, keys = make_test_collaboration(5)
    local = LocalRound(manifest, keys)
    inputs = {p: np.arange(4) for p in manifest.parties}
    result = local.run(inputs, tamper_response=_corrupt_seed_share_of_p02(lambda share: share[:-1]))
    assert np.array_equal(result.total, 5 * np.arange(4))
    assert local.server is not None and "Unmask: " in local.server.rejected["p00"]


def test_wrong_but_well_formed_share_aborts_naming_the_subject() -> None:
    manifest, keys = make_test_collaboration(5)  # t = 3 of 5 responders: reconstruction is cross-checked
    local = LocalRound(manifest, keys)
    corrupt = _corrupt_seed_share_of_p02(lambda share: share[:2] + bytes(66))
    with pytest.raises(ProtocolAbort, match="Unmask: round aborted, party p02: cannot reconstruct its self"):
        local.run({p: np.arange(4) for p in manifest.parties}, tamper_response=corrupt)
    assert local.server is not None and local.server.aborted


# ---------------------------------------------------------------- manifest and session id


def test_session_id_binds_every_field() -> None:
    digest, other = bytes(32), bytes([1]) * 32
    base = session_id("collab", 3, "abc", digest)
    assert len(base) == 32
    assert base == session_id("collab", 3, "abc", digest)
    variants = {
        base,
        session_id("collab2", 3, "abc", digest),
        session_id("collab", 4, "abc", digest),
        session_id("collab", 3, "abd", digest),
        session_id("collab", 3, "abc", other),  # another request: another session
    }
    assert len(variants) == 5
    assert session_id("ab", 1, "c", digest) != session_id("a", 1, "bc", digest)
    with pytest.raises(InvalidInput, match="request_digest must be 32 bytes"):
        session_id("collab", 3, "abc", b"short")


def test_threshold_default_and_validation() -> None:
    manifest, keys = make_test_collaboration(10)
    assert manifest.threshold == 6 and manifest.quorum == 6 and manifest.max_colluders == 1
    publics = tuple(k.public_key() for k in keys.values())
    common = dict(collaboration_id="c", parties=manifest.parties, identity_keys=publics, schema_hash="h")
    with pytest.raises(InvalidInput, match=r"threshold \(5\) must be in \(n/2, n\]"):
        SecAggManifest(**common, min_parties=2, threshold=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"threshold \(11\)"):
        SecAggManifest(**common, min_parties=2, threshold=11)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"min_parties \(1\)"):
        SecAggManifest(**common, min_parties=1)  # type: ignore[arg-type]
    strict = SecAggManifest(**common, min_parties=8, threshold=10)  # type: ignore[arg-type]
    assert strict.quorum == 10 and strict.max_colluders == 9
    with pytest.raises(InvalidInput, match="identity_keys"):
        SecAggManifest(**{**common, "identity_keys": publics[:9]}, min_parties=2)  # type: ignore[arg-type]


def test_required_threshold_for_colluders() -> None:
    assert required_threshold(10, 0) == 6
    assert required_threshold(10, 3) == 7  # 2t > n + c
    assert required_threshold(3, 2) == 3
    with pytest.raises(InvalidInput, match="colluders"):
        required_threshold(3, 3)


def test_min_parties_above_threshold_is_enforced() -> None:
    manifest, keys = make_test_collaboration(5, min_parties=5)  # t = 3 but 5 parties required
    inputs = {p: np.arange(3) for p in manifest.parties}
    with pytest.raises(ProtocolAbort, match="ShareKeys: .*only 4 parties shared keys; at least 5"):
        run_local_round(manifest, keys, inputs, drop_after={"p02": Stage.ADVERTISE_KEYS})


def test_server_stage_order_is_enforced() -> None:
    manifest, _ = make_test_collaboration(3)
    from cleanroom.secagg.server import SecAggServer

    server = SecAggServer(manifest, session_id("c", 0, "p", bytes(32)), 4)
    with pytest.raises(PreconditionFailed, match="before requests"):
        server.collect_advertise_keys({})
    with pytest.raises(PreconditionFailed, match="coordinator is at stage AdvertiseKeys"):
        server.share_keys_requests()
    with pytest.raises(PreconditionFailed, match="only after the Unmask"):
        server.result()
    assert server.advertise_keys_requests() == server.advertise_keys_requests()  # idempotent
