"""Vertical collaborations in-process: the tables are those of the true inner join, the noise is what is
promised, a lying coordinator's alignment map and forged payloads are refused, and no participant's
transcript carries a key, a value or a membership bit of the other party."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cleanroom.errors import InvalidInput, PermissionDenied, ProtocolAbort
from cleanroom.noise import party_noise_share
from cleanroom.schema import Schema
from cleanroom.vertical import psi
from cleanroom.vertical.layout import SIGMA_EXTRA2, RoundLayout
from cleanroom.vertical.messages import VerticalRoundRequest
from cleanroom.vertical.spec import VerticalSpec, normalise_key
from tests.vertical_fixtures import SCHEMA, A, B, frames, join_tables, make_spec, run_setup

DOMAIN = SCHEMA.domain
CLIQUES = tuple(
    DOMAIN.canonical(c)
    for c in [("cabin",), ("miles",), ("stays",), ("loyalty",), ("high_value",), ("cabin", "miles"),
              ("cabin", "stays"), ("miles", "loyalty"), ("stays", "loyalty"), ("loyalty", "high_value"),
              ("cabin", "high_value")]
)  # fmt: skip


def test_noise_off_tables_equal_the_true_inner_join_with_real_paillier() -> None:
    parts = frames(40, (9, 6), seed=3)
    parts[B].loc[0, "email"] = None  # a record without a key joins nothing
    run = run_setup(parts, max_rows=56)
    assert run.alignment is not None and run.alignment.intersection == len(
        set(parts[A]["email"].map(normalise_key)) & set(parts[B]["email"].dropna().map(normalise_key)) - {""}
    )
    for got, want, clique in zip(run.measure(CLIQUES), join_tables(parts, CLIQUES), CLIQUES, strict=True):
        assert np.array_equal(got, want), clique
    few = (DOMAIN.canonical(("cabin", "loyalty")), ("stays",))  # one cross pair: the other slots are extras
    for got, want in zip(run.measure(few), join_tables(parts, few), strict=True):
        assert np.array_equal(got, want)


def test_real_paillier_carries_negative_noise_through_the_slots() -> None:
    parts = frames(30, (5, 5), seed=4)
    run = run_setup(parts, max_rows=40, noise=party_noise_share)
    sigma2 = Fraction(400)
    got = np.concatenate([t.ravel() for t in run.measure(CLIQUES, sigma2)])
    want = np.concatenate([t.ravel() for t in join_tables(parts, CLIQUES)])
    diff = got - want
    assert (diff < 0).any() and (diff > 0).any()
    assert np.abs(diff).max() < 8 * np.sqrt(2 * 400)


def test_released_noise_variance_matches_the_promise() -> None:
    """Each party adds N_Z(0, sigma2) (its share alone protects its records): the release carries 2 sigma2;
    with the decryptor's share off, what the decryptor saw carried sigma2."""
    parts = frames(60, (10, 10), seed=5)
    sigma2 = Fraction(25)
    want = np.concatenate([t.ravel() for t in join_tables(parts, CLIQUES)])
    for silent, expected in ((None, 2 * 25), (A, 25)):
        run = run_setup(parts, max_rows=80, plain=True, noise=party_noise_share)
        if silent is not None:
            run.parties[silent].noise = lambda size, s2: np.zeros(size, dtype=np.int64)
        released = [np.concatenate([t.ravel() for t in run.measure(CLIQUES, sigma2)]) for _ in range(12)]
        diffs = np.concatenate(released) - np.tile(want, 12)
        if silent is not None:
            layout = RoundLayout(run.spec, DOMAIN, CLIQUES)
            mask = np.concatenate([
                np.full(layout.cells(i), layout.aggregator_of(c) != silent) for i, c in enumerate(CLIQUES)
            ])  # fmt: skip
            diffs = diffs[np.tile(mask, 12)]  # cells released by the silent party: only the other's noise
        n = diffs.size
        variance = float(np.mean(diffs.astype(float) ** 2))
        assert abs(variance - expected) < 5 * expected * np.sqrt(2 / n), (silent, variance, n)
        assert abs(float(np.mean(diffs))) < 5 * np.sqrt(expected / n)


def test_a_map_sending_many_records_to_one_entry_is_refused_and_would_amplify() -> None:
    parts = frames(20, (4, 4), seed=6)

    def pile_up(party: str, mapping: np.ndarray) -> np.ndarray:
        return np.zeros_like(mapping) if party == B else mapping

    with pytest.raises(PermissionDenied, match="repeats a position"):
        run_setup(parts, max_rows=24, plain=True, tamper=pile_up)
    for bad in (lambda m: m[:-1], lambda m: np.where(np.arange(m.size) == 0, 10**6, m)):
        with pytest.raises(PermissionDenied):
            run_setup(parts, max_rows=24, plain=True, tamper=lambda p, m, bad=bad: bad(m) if p == A else m)
    # what the check prevents: with every hotel record on one airline entry, that record counts 20+ times
    run = run_setup(parts, max_rows=24, plain=True)
    job, airline = run.parties[B], run.parties[A]
    real = {airline.positions[e] for e, r in enumerate(airline.blinded.record_of) if r >= 0}  # type: ignore[union-attr]
    matched = next(int(p) for p in job.mapping if int(p) in real)  # type: ignore[union-attr]
    job.mapping = np.full_like(job.mapping, matched)  # type: ignore[arg-type]
    tables = run.measure((DOMAIN.canonical(("cabin", "stays")),))
    assert tables[0].max() > 1 + len(parts[B]) // 2  # one airline record would dominate the table


def test_forged_replayed_or_altered_payloads_are_refused() -> None:
    parts = frames(12, (3, 3), seed=7)
    run = run_setup(parts, max_rows=16, plain=True)
    request = VerticalRoundRequest("job", "job/9", 9, (("stays",),), Fraction(4))
    aggregate = run.parties[B].aggregate(request, b"s" * 32)  # the hotel's column: the hotel aggregates
    assert aggregate.data
    with pytest.raises(ProtocolAbort, match="signature"):  # replayed into another session
        run.parties[A].release(request, b"t" * 32, dataclasses.replace(aggregate, sid=b"t" * 32))
    with pytest.raises(ProtocolAbort, match="signature"):  # altered (scaled) ciphertexts
        data = bytearray(aggregate.data)
        data[-1] ^= 1
        run.parties[A].release(request, b"s" * 32, dataclasses.replace(aggregate, data=bytes(data)))
    fresh = run_setup(parts, max_rows=16, plain=True)
    forged = SimpleNamespace(sid=fresh.parties[A].sid, sender=A, public_key=b"plain",
                             blinded=psi.random_element() * 16, signature=b"\0" * 64)  # fmt: skip
    with pytest.raises(ProtocolAbort, match="signature"):
        fresh.parties[B].blind(forged)  # type: ignore[arg-type]


def _shapes(messages: list[object]) -> list[tuple[str, tuple[tuple[str, int], ...]]]:
    out = []
    for m in messages:
        if isinstance(m, np.ndarray):
            out.append(("map", (("size", m.size),)))
        elif dataclasses.is_dataclass(m):
            fields = tuple(
                (f.name, len(v) if isinstance(v, bytes) else -1)
                for f in dataclasses.fields(m)
                for v in [getattr(m, f.name)]
                if f.name not in ("sid",)
            )
            out.append((type(m).__name__, fields))
    return out


def test_transcripts_hold_no_key_value_or_membership_bit() -> None:
    """Neighbouring inputs: the hotel with and without one customer the airline also has."""
    base = frames(16, (4, 4), seed=8)
    shared_key = normalise_key(base[A]["email"].iloc[0])
    inside = base[B]["email"].map(normalise_key) == shared_key
    if not inside.any():
        row = base[A].iloc[[0]].assign(stays=3.0, loyalty="gold", high_value="yes")[base[B].columns]
        base[B] = pd.concat([base[B].iloc[:-1], row], ignore_index=True)
    without = {A: base[A], B: base[B][base[B]["email"].map(normalise_key) != shared_key]}
    runs = []
    for parts in (base, without):
        run = run_setup(parts, max_rows=24, noise=party_noise_share)
        run.measure(CLIQUES, Fraction(9))
        runs.append(run)
    secrets_of = [
        token.encode()
        for parts in (base, without)
        for frame in parts.values()
        for token in [*frame["email"].astype(str), *frame["email"].map(normalise_key)]
    ]
    hashed = [psi.hash_to_group("test-collab", normalise_key(k)) for k in base[B]["email"]]
    for run in runs:
        for who, messages in run.received.items():
            blob = b"".join(_bytes_of(m) for m in messages)
            assert not any(s in blob for s in secrets_of), who
            assert not any(h in blob for h in hashed), who
    for who in (A, B):  # same message kinds and sizes whichever the hotel's data: nothing to tell them apart
        assert _shapes(runs[0].received[who]) == _shapes(runs[1].received[who]), who
    assert runs[0].alignment.intersection == runs[1].alignment.intersection + 1  # type: ignore[union-attr]


def _bytes_of(message: object) -> bytes:
    if isinstance(message, np.ndarray):
        return message.tobytes()
    if dataclasses.is_dataclass(message):
        return b"".join(v for f in dataclasses.fields(message) for v in [getattr(message, f.name)]
                        if isinstance(v, bytes))  # fmt: skip
    return b""


def test_the_map_a_party_gets_is_uniform_whether_or_not_its_record_matched() -> None:
    """Where the coordinator sends the airline's record says nothing about whether the hotel has it."""
    parts = frames(6, (2, 2), seed=9)
    key = normalise_key(parts[A]["email"].iloc[0])
    without = {A: parts[A], B: parts[B][parts[B]["email"].map(normalise_key) != key]}
    size = 2 * 8
    for data in (parts, without):
        counts = np.zeros(size)
        for _ in range(160):
            run = run_setup(data, max_rows=8, plain=True)
            job = run.parties[A]
            entry = job.blinded.record_of.index(0)  # type: ignore[union-attr]
            counts[int(job.mapping[entry])] += 1  # type: ignore[index]
        expected = 160 / size
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 40.8, chi2  # 99.9 % quantile of chi-square with 15 degrees of freedom


def test_extra_tables_are_counted_and_charged() -> None:
    spec = make_spec(10)
    full = RoundLayout(spec, DOMAIN, (DOMAIN.canonical(("cabin", "stays")),))
    assert spec.encryptor == A  # fewer levels: cabin 3 + miles 4 versus stays 4 + loyalty 4 + target 3
    # the hotel's stays cells carry every airline column: cabin asked for; is_real and miles are extras
    assert full.extra_tables() == 2
    own = RoundLayout(spec, DOMAIN, (("cabin",), ("cabin", "miles")))
    assert own.extra_tables() == 0
    assert full.rho(Fraction(4)) == pytest.approx(1 / 8 + 2 / (2 * float(SIGMA_EXTRA2)), rel=1e-12)


def test_the_plan_section_is_validated() -> None:
    plan = SimpleNamespace(
        source="plan.toml", target="high_value", data_parties=[SimpleNamespace(id=A), SimpleNamespace(id=B)],
        sections={"vertical": {"join_key": "email", "max_rows": 100,
                               "columns": {A: ["cabin", "miles"], B: ["stays", "loyalty", "high_value"]}}},
    )  # fmt: skip
    spec = VerticalSpec.from_plan(plan, SCHEMA)
    assert spec.target_party == B and spec.list_size(A) == 200
    assert spec.party_schema(SCHEMA, A).names == ("email", "cabin", "miles")
    bad = [
        ({"columns": {A: ["cabin"], B: ["stays", "loyalty", "high_value"]}}, "held by no party"),
        (
            {"columns": {A: ["cabin", "miles", "stays"], B: ["stays", "loyalty", "high_value"]}},
            "both parties",
        ),
        ({"join_key": "cabin"}, "join_key"),
        ({"max_rows": 0}, "max_rows"),
    ]
    for change, message in bad:
        section = {**plan.sections["vertical"], **change}
        with pytest.raises(InvalidInput, match=message):
            VerticalSpec.from_plan(
                SimpleNamespace(**{**vars(plan), "sections": {"vertical": section}}), SCHEMA
            )
    unmarked = Schema(tuple(dataclasses.replace(c, join_key=False) for c in SCHEMA.columns))
    with pytest.raises(InvalidInput, match="join_key"):
        VerticalSpec.from_plan(plan, unmarked)


def test_simulate_vertical_names_a_bad_party_argument_in_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cleanroom_cli.main import main

    schema = tmp_path / "schema.json"
    schema.write_text(SCHEMA.to_json())
    data = tmp_path / "airline.csv"
    data.write_text("email,cabin,miles\na@x.org,economy,3\n")
    common = ["simulate", "--vertical", "--schema", str(schema), "--target", "high_value", "--task",
              "classification", "--epsilon", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*common, "--party", f"airline={data}"]) == 2
    assert "NAME=PATH:col1,col2" in capsys.readouterr().err
    assert main([*common, "--party", f"airline={data}:cabin,miles"]) == 2
    assert "exactly two --party" in capsys.readouterr().err


def test_prepared_randomizers_are_used_once_each_and_decrypt() -> None:
    from tests.vertical_fixtures import cached_key

    key = cached_key(A)()
    key.prepare(4)
    pool = list(key._pool)
    zeros = [key.encrypt_own(0) for _ in range(5)]
    assert zeros[:4] == pool  # Enc(0) is the randomizer itself: the prepared ones, in order, once each
    assert zeros[4] not in pool and len(set(map(int, zeros))) == 5
    assert not key._pool
    key.prepare(2)
    assert [key.decrypt(key.encrypt_own(m)) for m in (7, 2**1500)] == [7, 2**1500]
