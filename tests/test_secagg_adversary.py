"""A lying coordinator, replays, tampering and illegal stage transitions are refused and abort the round."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cleanroom.errors import InvalidInput, PreconditionFailed, ProtocolAbort
from cleanroom.secagg import server as server_module
from cleanroom.secagg.local import LocalRound, make_test_collaboration
from cleanroom.secagg.messages import (
    AdvertiseKeys,
    AdvertiseKeysRequest,
    ConsistencyCheckRequest,
    EncryptedShares,
    MaskedInputRequest,
    ShareKeysRequest,
    Stage,
    UnmaskRequest,
    message_size,
)
from cleanroom.secagg.party import TRANSITIONS, PartyState, SecAggParty
from cleanroom.secagg.reveal import MemoryRevealRecord, ShareKind, SqliteRevealRecord

pytestmark = pytest.mark.adversary  # the malicious-coordinator suite: `pytest -m adversary`


def _inputs(parties: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {p: np.arange(6) * (i + 1) for i, p in enumerate(parties)}


def _assert_nothing_revealed(local: LocalRound) -> None:
    assert all(Stage.UNMASK not in sent for sent in local.responses.values())
    assert local.server is not None and local.server.aborted
    with pytest.raises(ProtocolAbort, match="no result"):
        local.server.result()


def _rewrite(stage_type: type, party: str, change: Any) -> Any:
    """A tamper hook applying `change` to the request of type `stage_type` sent to `party`."""

    def tamper(to: str, request: Any) -> Any:
        return change(request) if to == party and isinstance(request, stage_type) else request

    return tamper


# ---------------------------------------------------------------- both share kinds


def test_asking_for_both_share_kinds_of_one_party_is_refused() -> None:
    manifest, keys = make_test_collaboration(5)
    local = LocalRound(manifest, keys)
    ask_both = _rewrite(UnmaskRequest, "p00", lambda r: dataclasses.replace(r, reveal_key_for=("p02",)))
    with pytest.raises(ProtocolAbort, match="Unmask: party p00 aborts .*both share kinds of party p02"):
        local.run(_inputs(manifest.parties), tamper=ask_both)
    _assert_nothing_revealed(local)
    assert local.parties["p00"].state is PartyState.ABORTED
    with pytest.raises(PreconditionFailed, match="p00 has aborted"):
        local.parties["p00"].unmask(_dummy_request(local.sid, Stage.UNMASK))


def test_asking_for_the_key_share_of_a_survivor_is_refused() -> None:
    manifest, keys = make_test_collaboration(5)
    local = LocalRound(manifest, keys)
    swap = _rewrite(
        UnmaskRequest,
        "p01",
        lambda r: dataclasses.replace(r, reveal_seed_for=r.reveal_seed_for[1:], reveal_key_for=("p00",)),
    )
    with pytest.raises(ProtocolAbort, match="Unmask: party p01 aborts .*seed shares asked for"):
        local.run(_inputs(manifest.parties), tamper=swap)
    # p00 answered (seed shares only) before p01 refused; after the refusal nobody else was asked
    assert local.responses["p00"][Stage.UNMASK].key_shares == ()
    assert [p for p, sent in local.responses.items() if Stage.UNMASK in sent] == ["p00"]
    assert local.parties["p01"].state is PartyState.ABORTED


def test_durable_record_refuses_the_other_kind_after_a_restart(tmp_path: Path) -> None:
    manifest, keys = make_test_collaboration(4)
    local = LocalRound(manifest, keys)
    store_path = tmp_path / "reveals.sqlite"
    # Before a crash, p01 had answered an Unmask of this session treating p03 as dropped (key share).
    assert SqliteRevealRecord(store_path).claim(local.sid, {"p03": ShareKind.KEY}) == {}
    restarted = SqliteRevealRecord(store_path)
    local = LocalRound(manifest, keys, reveal_records={"p01": restarted})
    with pytest.raises(
        ProtocolAbort, match="Unmask: party p01 aborts .*already revealed the key share of party p03"
    ):
        local.run(_inputs(manifest.parties))
    assert restarted.kinds(local.sid) == {"p03": ShareKind.KEY}  # the refused claim recorded nothing


@pytest.mark.parametrize("make_store", ["memory", "sqlite"])
def test_reveal_record_rule(tmp_path: Path, make_store: str) -> None:
    store = MemoryRevealRecord() if make_store == "memory" else SqliteRevealRecord(tmp_path / "r.sqlite")
    sid, other_sid = b"s" * 32, b"t" * 32
    assert store.claim(sid, {"a": ShareKind.SEED, "b": ShareKind.KEY}) == {}
    assert store.claim(sid, {"a": ShareKind.SEED}) == {}  # idempotent
    assert store.claim(sid, {"a": ShareKind.KEY, "c": ShareKind.SEED}) == {"a": ShareKind.SEED}
    assert "c" not in store.kinds(sid)  # all-or-nothing
    assert store.claim(other_sid, {"a": ShareKind.KEY}) == {}  # sessions are independent
    if make_store == "sqlite":
        assert SqliteRevealRecord(tmp_path / "r.sqlite").kinds(sid) == {
            "a": ShareKind.SEED,
            "b": ShareKind.KEY,
        }


# ---------------------------------------------------------------- inconsistent survivor lists


def test_different_survivor_lists_are_caught_by_the_coordinator_check() -> None:
    # p04 signed another list: its signature does not verify, so it is dropped from Unmask; the others'
    # signatures agree and the sum is still exact
    manifest, keys = make_test_collaboration(5)
    local = LocalRound(manifest, keys)
    shorter = _rewrite(
        ConsistencyCheckRequest, "p04", lambda r: dataclasses.replace(r, survivors=r.survivors[1:])
    )
    result = local.run(_inputs(manifest.parties), tamper=shorter)
    assert np.array_equal(result.total, sum(_inputs(manifest.parties).values()))
    assert local.server is not None and "signature" in local.server.rejected["p04"]
    assert Stage.UNMASK not in local.responses["p04"]


def test_different_survivor_lists_are_refused_by_parties(monkeypatch: pytest.MonkeyPatch) -> None:
    # A lying coordinator that skips its own signature check: p03 and p04 were shown a list without p00.
    monkeypatch.setattr(server_module, "signature_valid", lambda *args: True)
    manifest, keys = make_test_collaboration(5)
    local = LocalRound(manifest, keys)

    def split_view(to: str, request: Any) -> Any:
        if to in ("p03", "p04") and isinstance(request, ConsistencyCheckRequest):
            return dataclasses.replace(request, survivors=request.survivors[1:])
        return request

    with pytest.raises(
        ProtocolAbort, match="Unmask: party p00 aborts .*signature of party p03 on the survivor list"
    ):
        local.run(_inputs(manifest.parties), tamper=split_view)
    _assert_nothing_revealed(local)
    # and a party shown a list other than the one it signed refuses too
    p04 = local.parties["p04"]
    assert p04.state is PartyState.CONFIRMED
    with pytest.raises(
        ProtocolAbort, match="Unmask: party p04 aborts .*differs from the one this party signed"
    ):
        p04.unmask(_unmask_for(local))


def _unmask_for(local: LocalRound) -> UnmaskRequest:
    survivors = local.manifest.parties
    signatures = tuple(local.responses[p][Stage.CONSISTENCY_CHECK] for p in survivors)
    return UnmaskRequest(local.sid, Stage.UNMASK.value, "coordinator", survivors, signatures, survivors, ())


# ---------------------------------------------------------------- replay and tampering


def test_advert_replayed_from_another_session_is_refused() -> None:
    manifest, keys = make_test_collaboration(4)
    old = LocalRound(manifest, keys, round_number=0)
    old.run(_inputs(manifest.parties))
    old_advert: AdvertiseKeys = old.responses["p02"][Stage.ADVERTISE_KEYS]

    def replace_p02(request: ShareKeysRequest) -> ShareKeysRequest:
        adverts = tuple(old_advert if a.sender == "p02" else a for a in request.adverts)
        return dataclasses.replace(request, adverts=adverts)

    new = LocalRound(manifest, keys, round_number=1)
    with pytest.raises(
        ProtocolAbort, match="ShareKeys: party p00 aborts .*advert of party p02 belongs to another"
    ):
        new.run(_inputs(manifest.parties), tamper=_rewrite(ShareKeysRequest, "p00", replace_p02))
    _assert_nothing_revealed(new)

    # relabelled with the new sid, the old signature no longer verifies
    relabelled = dataclasses.replace(old_advert, sid=new.sid)
    newer = LocalRound(manifest, keys, round_number=1)
    relabel = _rewrite(
        ShareKeysRequest,
        "p01",
        lambda r: dataclasses.replace(
            r, adverts=tuple(relabelled if a.sender == "p02" else a for a in r.adverts)
        ),
    )
    with pytest.raises(
        ProtocolAbort, match="ShareKeys: party p01 aborts .*advert of party p02 has an invalid sig"
    ):
        newer.run(_inputs(manifest.parties), tamper=relabel)


def test_request_from_another_session_is_refused() -> None:
    manifest, keys = make_test_collaboration(3)
    old = LocalRound(manifest, keys, round_number=7)
    stale = AdvertiseKeysRequest(old.sid, Stage.ADVERTISE_KEYS.value, "coordinator")
    new = LocalRound(manifest, keys, round_number=8)
    with pytest.raises(ProtocolAbort, match="AdvertiseKeys: party p01 aborts .*foreign session id"):
        new.run(_inputs(manifest.parties), tamper=_rewrite(AdvertiseKeysRequest, "p01", lambda r: stale))
    assert new.parties["p01"].state is PartyState.ABORTED


def _flip_last_byte(item: EncryptedShares) -> EncryptedShares:
    data = bytearray(item.ciphertext)
    data[-1] ^= 0x01
    return dataclasses.replace(item, ciphertext=bytes(data))


@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        (lambda s: _flip_last_byte(s) if s.sender == "p02" else s, "p02"),
        (lambda s: dataclasses.replace(s, sender="p03") if s.sender == "p02" else s, "p03"),
    ],
)
def test_tampered_ciphertext_is_refused_naming_the_sender(change: Any, culprit: str) -> None:
    manifest, keys = make_test_collaboration(4)
    local = LocalRound(manifest, keys)
    tamper = _rewrite(
        MaskedInputRequest, "p00", lambda r: dataclasses.replace(r, shares=tuple(map(change, r.shares)))
    )
    pattern = f"MaskedInput: party p00 aborts .*shares from party {culprit}"
    with pytest.raises(ProtocolAbort, match=pattern):
        local.run(_inputs(manifest.parties), tamper=tamper)
    assert Stage.MASKED_INPUT not in local.responses["p00"]
    _assert_nothing_revealed(local)


def test_non_member_in_the_roster_is_refused() -> None:
    manifest, keys = make_test_collaboration(3)
    local = LocalRound(manifest, keys)

    def add_mallory(request: ShareKeysRequest) -> ShareKeysRequest:
        fake = dataclasses.replace(request.adverts[0], sender="mallory")
        return dataclasses.replace(request, adverts=(*request.adverts, fake))

    with pytest.raises(ProtocolAbort, match="ShareKeys: party p02 aborts .*non-member 'mallory'"):
        local.run(_inputs(manifest.parties), tamper=_rewrite(ShareKeysRequest, "p02", add_mallory))


def test_roster_below_quorum_is_refused_by_the_party() -> None:
    manifest, keys = make_test_collaboration(5)  # quorum 3
    local = LocalRound(manifest, keys)
    only_two = _rewrite(
        ShareKeysRequest,
        "p01",
        lambda r: dataclasses.replace(r, adverts=tuple(a for a in r.adverts if a.sender in ("p00", "p01"))),
    )
    with pytest.raises(ProtocolAbort, match="ShareKeys: party p01 aborts .*only 2 parties advertised"):
        local.run(_inputs(manifest.parties), tamper=only_two)


# ---------------------------------------------------------------- stage transitions and retries


def _dummy_request(sid: bytes, stage: Stage, sender: str = "coordinator") -> Any:
    header = (sid, stage.value, sender)
    return {
        Stage.ADVERTISE_KEYS: lambda: AdvertiseKeysRequest(*header),
        Stage.SHARE_KEYS: lambda: ShareKeysRequest(*header, ()),
        Stage.MASKED_INPUT: lambda: MaskedInputRequest(*header, ()),
        Stage.CONSISTENCY_CHECK: lambda: ConsistencyCheckRequest(*header, ()),
        Stage.UNMASK: lambda: UnmaskRequest(*header, (), (), (), ()),
    }[stage]()


def _call(party: SecAggParty, stage: Stage, request: Any) -> Any:
    if stage is Stage.MASKED_INPUT:
        return party.masked_input(request, np.arange(6))
    method = {
        Stage.ADVERTISE_KEYS: party.advertise_keys,
        Stage.SHARE_KEYS: party.share_keys,
        Stage.CONSISTENCY_CHECK: party.consistency_check,
        Stage.UNMASK: party.unmask,
    }[stage]
    return method(request)


def _party_in_state(target: PartyState) -> SecAggParty:
    """Run an honest 3-party round in which p00 stops answering once it reaches `target`."""
    manifest, keys = make_test_collaboration(3, min_parties=2)
    local = LocalRound(manifest, keys)
    order = list(TRANSITIONS)
    if target is PartyState.ABORTED:
        bad = _rewrite(ShareKeysRequest, "p00", lambda r: dataclasses.replace(r, adverts=r.adverts[1:]))
        with pytest.raises(ProtocolAbort):
            local.run(_inputs(manifest.parties), tamper=bad)
        return local.parties["p00"]
    stop = {
        PartyState.ADVERTISED: Stage.ADVERTISE_KEYS,
        PartyState.SHARED: Stage.SHARE_KEYS,
        PartyState.MASKED: Stage.MASKED_INPUT,
        PartyState.CONFIRMED: Stage.CONSISTENCY_CHECK,
    }
    if target is PartyState.NEW:
        return SecAggParty(manifest, "p00", keys["p00"], local.sid)
    local.run(_inputs(manifest.parties), drop_after={"p00": stop[target]} if target in stop else {})
    assert order.index(local.parties["p00"].state) == order.index(target)
    return local.parties["p00"]


@pytest.mark.parametrize("state", list(PartyState))
def test_transition_matrix(state: PartyState) -> None:
    party = _party_in_state(state)
    assert party.state is state
    for stage in Stage:
        allowed = stage in TRANSITIONS[state]
        # sender "intruder": never an identical retry of a real request (those are answered from cache)
        request = _dummy_request(party.sid, stage, sender="intruder")
        if allowed:
            try:
                _call(party, stage, request)
            except PreconditionFailed:  # pragma: no cover - this is the failure being tested
                pytest.fail(f"{stage.value} wrongly refused in state {state.value}")
            except ProtocolAbort as exc:
                assert "intruder" in str(exc)  # passed the transition table, then refused on its content
            party = _party_in_state(state)
        else:
            with pytest.raises(PreconditionFailed, match=stage.value):
                _call(party, stage, request)
            assert party.state is state


def test_identical_retry_returns_the_identical_answer() -> None:
    manifest, keys = make_test_collaboration(3)
    delivered: dict[tuple[str, Stage], Any] = {}

    def remember(to: str, request: Any) -> Any:
        delivered[(to, Stage(request.stage))] = request
        return request

    local = LocalRound(manifest, keys)
    local.run(_inputs(manifest.parties), drop_after={"p00": Stage.MASKED_INPUT}, tamper=remember)
    p00, p01 = local.parties["p00"], local.parties["p01"]
    masked_request = delivered[("p00", Stage.MASKED_INPUT)]
    again = p00.masked_input(masked_request, np.arange(6) + 1000)  # a retry never re-masks, never re-noises
    assert again is local.responses["p00"][Stage.MASKED_INPUT]
    assert p01.unmask(delivered[("p01", Stage.UNMASK)]) is local.responses["p01"][Stage.UNMASK]
    with pytest.raises(PreconditionFailed, match="MaskedInput: party p01 is in state done"):
        p01.masked_input(delivered[("p01", Stage.MASKED_INPUT)], np.arange(6))
    changed = dataclasses.replace(masked_request, shares=masked_request.shares[:1])
    with pytest.raises(PreconditionFailed, match="MaskedInput: party p00 is in state masked"):
        p00.masked_input(changed, np.arange(6))


def test_messages_validate_their_structure() -> None:
    sid = b"s" * 32
    with pytest.raises(InvalidInput, match="sid must be 32 bytes"):
        AdvertiseKeysRequest(b"short", Stage.ADVERTISE_KEYS.value, "coordinator")
    with pytest.raises(InvalidInput, match="not a protocol stage"):
        AdvertiseKeysRequest(sid, "Reveal", "coordinator")
    with pytest.raises(InvalidInput, match="ciphertext must be bytes"):
        EncryptedShares("p00", "p01", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="survivors must be a tuple"):
        ConsistencyCheckRequest(sid, Stage.CONSISTENCY_CHECK.value, "c", ["p00"])  # type: ignore[arg-type]
    request = MaskedInputRequest(
        sid, Stage.MASKED_INPUT.value, "coordinator", (EncryptedShares("a", "b", b"xy"),)
    )
    assert message_size(request) == (32 + 2) + (11 + 2) + (11 + 2) + ((1 + 2) + (1 + 2) + (2 + 2) + 2) + 2
