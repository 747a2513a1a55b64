"""Sensitivity property test of every release kind a vertical party makes (`pytest -m sensitivity`).

A vertical party releases two things per round (cleanroom.vertical.layout.VERTICAL_RELEASES):
- `vertical:aggregate`: its aggregated ciphertexts, which the other party decrypts: per slot, the asked-for
  counts (noised at the round's variance) and the extra tables (noised at SIGMA_EXTRA2);
- `vertical:release`: the tables it decrypts and sends to the coordinator.
This runs the real party code (`VerticalJob.aggregate` / `release`, the real PSI and alignment) on the
plain backend with the noise off, on a dataset pair D and an add-one/remove-one neighbour D' at either party
(a record the other party also has, one only it has, one without a key, a duplicate of another's values,
values out of range or missing), and asserts that ||f(D) - f(D')|| stays within what the node charges:
L2 sqrt(K) and L1 K over the K asked-for tables, L2 sqrt(K_extra) over the extra tables.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cleanroom.vertical.layout import (
    OFFSET,
    SIGMA_EXTRA2,
    VERTICAL_RELEASES,
    Full,
    Packed,
    RoundLayout,
    unpack,
)
from cleanroom.vertical.messages import VerticalRoundRequest
from tests.vertical_fixtures import COLUMNS, SCHEMA, A, B, run_setup

pytestmark = pytest.mark.sensitivity

COVERED = frozenset({"vertical:aggregate", "vertical:release"})
DATASETS = 60
MAX_ROWS = 14
POOLS: dict[str, list[Any]] = {
    "cabin": ["economy", "business", None],
    "miles": [0.0, 9.9, 10.0, 99.0, 100.0, 150.0, -3.0, None],
    "stays": [0.0, 1.0, 4.9, 5.0, 20.0, 25.0, None],
    "loyalty": ["none", "silver", "gold", None],
    "high_value": ["no", "yes", None],
}
DOMAIN = SCHEMA.domain


def _row(rng: np.random.Generator, party: str, key: str) -> dict[str, Any]:
    row: dict[str, Any] = {"email": key}
    for column in COLUMNS[party]:
        pool = POOLS[column]
        row[column] = pool[int(rng.integers(0, len(pool)))]
    return row


def _dataset(rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    shared = int(rng.integers(0, 8))
    only = [int(rng.integers(0, 5)) for _ in range(2)]
    rows: dict[str, list[dict[str, Any]]] = {A: [], B: []}
    for i in range(shared):
        for party in (A, B):
            rows[party].append(_row(rng, party, f"c{i}@x.org" if party == A else f"  C{i}@X.org "))
    for party, count in zip((A, B), only, strict=True):
        rows[party] += [_row(rng, party, f"{party}{i}@x.org") for i in range(count)]
    if rng.random() < 0.3 and rows[B]:
        rows[B][0]["email"] = None  # joins nothing
    return rows


def _neighbours(rng: np.random.Generator, rows: dict[str, list[dict[str, Any]]]) -> list[tuple[str, Any]]:
    out = []
    for party in (A, B):
        other = B if party == A else A
        kind = str(rng.choice(["matched", "unmatched", "no key", "duplicate values"]))
        if kind == "matched" and rows[other]:
            key = rows[other][int(rng.integers(0, len(rows[other])))]["email"] or "zz@x.org"
        else:
            key = None if kind == "no key" else "new@x.org"
        taken = {str(r["email"]).strip().lower() for r in rows[party]}
        if key is not None and str(key).strip().lower() in taken:
            key = "fresh@x.org"
        added = _row(rng, party, key) if kind != "duplicate values" or not rows[party] else {
            **rows[party][0], "email": key}  # fmt: skip
        if len(rows[party]) < MAX_ROWS:
            out.append((f"add {kind} at {party}", {**rows, party: [*rows[party], added]}))
        if rows[party]:
            drop = int(rng.integers(0, len(rows[party])))
            out.append((f"remove at {party}", {**rows, party: rows[party][:drop] + rows[party][drop + 1 :]}))
    return out


def _frames(rows: dict[str, list[dict[str, Any]]], rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    out = {}
    for party, records in rows.items():
        frame = pd.DataFrame(records, columns=["email", *COLUMNS[party]])
        out[party] = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    return out


def _cliques(rng: np.random.Generator) -> tuple[tuple[str, ...], ...]:
    attrs = DOMAIN.attrs
    every = [(a,) for a in attrs] + [(a, b) for i, a in enumerate(attrs) for b in attrs[i + 1 :]]
    chosen = [c for c in every if rng.random() < 0.35] or [every[int(rng.integers(0, len(every)))]]
    return tuple(DOMAIN.canonical(c) for c in chosen)


def _views(frames: dict[str, pd.DataFrame], cliques: tuple[tuple[str, ...], ...]) -> dict[str, np.ndarray]:
    """What each release kind carries (noise off), through the real party code."""
    run = run_setup(frames, MAX_ROWS, plain=True)
    request = VerticalRoundRequest("job", "job/1", 1, cliques, Fraction(4))
    layout = RoundLayout(run.spec, DOMAIN, cliques)
    asked, extra = [], []
    for party, job in run.parties.items():
        reply = job.aggregate(request, b"s" * 32)
        outputs = layout.outputs(party)
        values = job.peer_scheme.decode(reply.data, len(outputs), "harness")
        n_slots = 1 + sum(DOMAIN.size(c) for c in COLUMNS[run.spec.encryptor])
        for output, value in zip(outputs, values, strict=True):
            slots = [v - OFFSET for v in unpack(int(value))]
            if isinstance(output, Packed):
                asked += slots[: len(output.items)]
            else:
                assert isinstance(output, Full)
                for s, ref in enumerate(output.slots):
                    if ref is not None:
                        asked.append(slots[s])
                    elif output.t * 63 + s < n_slots:
                        extra.append(slots[s])
    tables = run.measure(cliques)
    released = np.concatenate([t.ravel() for t in tables])
    return {"vertical:aggregate": np.asarray(asked), "vertical:aggregate extra": np.asarray(extra),
            "vertical:release": released}  # fmt: skip


def _norms(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    diff = after.astype(float) - before.astype(float)
    return float(np.sqrt(np.sum(diff * diff))), float(np.sum(np.abs(diff)))


def test_vertical_releases_never_move_more_than_charged() -> None:
    rng = np.random.default_rng(20240611)
    checked, violations = 0, []
    for index in range(DATASETS):
        rows = _dataset(rng)
        cliques = _cliques(rng)
        layout = RoundLayout(run_spec(), DOMAIN, cliques)
        k, k_extra = len(cliques), layout.extra_tables()
        assert layout.rho(Fraction(4)) == pytest.approx(
            k / 8 + k_extra / (2 * float(SIGMA_EXTRA2)), rel=1e-12
        )
        base = _views(_frames(rows, rng), cliques)
        for label, neighbour in _neighbours(rng, rows):
            moved = _views(_frames(neighbour, rng), cliques)
            for kind, bound in (("vertical:aggregate", k), ("vertical:release", k),
                                ("vertical:aggregate extra", k_extra)):  # fmt: skip
                l2, l1 = _norms(base[kind], moved[kind])
                checked += 1
                if l2 > math.sqrt(bound) + 1e-9 or l1 > bound + 1e-9:
                    violations.append(f"dataset {index}, {label}, {kind}: L2 {l2:.3g} L1 {l1} > K {bound}")
    print(f"\nvertical: {checked} neighbour comparisons, {len(violations)} violations")
    assert checked >= 3 * DATASETS
    assert not violations, "\n".join(violations[:5])


def run_spec() -> Any:
    from tests.vertical_fixtures import make_spec

    return make_spec(MAX_ROWS)


def test_harness_covers_every_vertical_release_kind() -> None:
    assert frozenset(VERTICAL_RELEASES) == COVERED


def test_a_vertical_node_accepts_no_marginal_or_evaluation_round() -> None:
    """Its only releases are the two vertical kinds above: horizontal rounds are refused before any charge."""
    from types import SimpleNamespace

    from cleanroom.errors import PermissionDenied
    from party.vertical import VerticalPartyNode
    from transport import wire

    node = SimpleNamespace(party_id="airline")
    for request in (
        wire.RoundRequest("job", "job/0", 0, (("cabin",),), Fraction(4)),
        wire.RoundRequest("job", "job/1", 1, (), Fraction(4), statistic="utility", length=2),
    ):
        with pytest.raises(PermissionDenied, match="vertical"):
            VerticalPartyNode.check_round(node, request, b"")  # type: ignore[arg-type]
