"""In-process vertical jobs for tests: two real `VerticalJob` parties and a scriptable coordinator.

The coordinator's steps are the real ones (`cleanroom.vertical.coordinator`); hooks let a test rewrite the
alignment maps (a lying coordinator) and record every message each participant received (transcripts).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cleanroom.encoding import encode
from cleanroom.marginals import count_table
from cleanroom.schema import CATEGORICAL, IDENTIFIER, NUMERICAL, Column, Schema
from cleanroom.vertical import coordinator
from cleanroom.vertical.messages import VerticalRoundRequest, setup_sid
from cleanroom.vertical.paillier import PaillierPrivate, PlainScheme
from cleanroom.vertical.party import VerticalJob
from cleanroom.vertical.spec import VerticalSpec, normalise_key

A, B = "airline", "hotel"
SCHEMA = Schema(
    (
        Column("email", IDENTIFIER, join_key=True),
        Column("cabin", CATEGORICAL, categories=("economy", "business")),
        Column("miles", NUMERICAL, lower=0, upper=100, bins=(0, 10, 50, 100)),
        Column("stays", NUMERICAL, lower=0, upper=20, bins=(0, 1, 5, 20)),
        Column("loyalty", CATEGORICAL, categories=("none", "silver", "gold")),
        Column("high_value", CATEGORICAL, categories=("no", "yes"), target=True),
    )
)
COLUMNS = {A: ("cabin", "miles"), B: ("stays", "loyalty", "high_value")}
IDENTITIES = {A: Ed25519PrivateKey.generate(), B: Ed25519PrivateKey.generate()}
_KEYS: dict[str, PaillierPrivate] = {}


def cached_key(party: str) -> Callable[[], PaillierPrivate]:
    """A real 2048-bit key pair per party, generated once per test session (key generation takes seconds)."""

    def factory() -> PaillierPrivate:
        if party not in _KEYS:
            _KEYS[party] = PaillierPrivate.generate()
        return _KEYS[party]

    return factory


def make_spec(
    max_rows: int, schema: Schema = SCHEMA, columns: dict[str, tuple[str, ...]] = COLUMNS
) -> VerticalSpec:
    levels = {p: sum(schema.column(c).n_levels for c in cols) for p, cols in columns.items()}
    target = next(p for p, cols in columns.items() if schema.target in cols)
    return VerticalSpec("email", columns, dict.fromkeys(columns, max_rows), target, levels)


def frames(n_shared: int, n_only: tuple[int, int], seed: int) -> dict[str, pd.DataFrame]:
    """Customers keyed by e-mail: `n_shared` at both parties, the rest at one; values correlated across."""
    rng = np.random.default_rng(seed)
    total = n_shared + sum(n_only)
    emails = [
        f"  Customer{i}@Example.com " if i % 3 == 0 else f"customer{i}@example.com" for i in range(total)
    ]
    miles = rng.uniform(0, 100, total)
    frame = pd.DataFrame({
        "email": emails,
        "cabin": np.where(miles > 60, "business", "economy"),
        "miles": miles.round(1),
        "stays": np.clip(miles / 6 + rng.normal(0, 2, total), 0, 20).round(),
        "loyalty": rng.choice(["none", "silver", "gold"], total),
        "high_value": np.where(miles + rng.normal(0, 20, total) > 60, "yes", "no"),
    })  # fmt: skip
    a_rows = list(range(n_shared + n_only[0]))
    b_rows = list(range(n_shared)) + list(range(n_shared + n_only[0], total))
    out = {
        A: frame.iloc[a_rows][["email", *COLUMNS[A]]],
        B: frame.iloc[b_rows][["email", *COLUMNS[B]]],
    }
    return {p: f.sample(frac=1.0, random_state=seed).reset_index(drop=True) for p, f in out.items()}


def true_join(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    keyed = {p: f.assign(email=f["email"].map(normalise_key)) for p, f in parts.items()}
    return keyed[A].merge(keyed[B], on="email", how="inner")


def join_tables(parts: dict[str, pd.DataFrame], cliques: tuple[tuple[str, ...], ...]) -> list[np.ndarray]:
    joined = true_join(parts)
    encoded = encode(SCHEMA, joined[list(SCHEMA.names)], source="true join")
    return [count_table(encoded.codes, SCHEMA.domain, c) for c in cliques]


def zero_noise(size: int, sigma2: Fraction) -> np.ndarray:
    return np.zeros(size, dtype=np.int64)


@dataclass
class Run:
    spec: VerticalSpec
    parties: dict[str, VerticalJob]
    alignment: coordinator.Alignment | None = None
    received: dict[str, list[Any]] = field(default_factory=dict)  # participant -> messages received
    rounds: itertools.count = field(default_factory=itertools.count)

    def measure(
        self, cliques: tuple[tuple[str, ...], ...], sigma2: Fraction = Fraction(4)
    ) -> list[np.ndarray]:
        number = next(self.rounds)
        request = VerticalRoundRequest("job", f"job/{number}", number, cliques, sigma2)
        sid = request.digest()
        aggregates = {p: job.aggregate(request, sid) for p, job in self.parties.items()}
        self.note("coordinator", *aggregates.values())
        released = {}
        for party, job in self.parties.items():
            other = aggregates[self.spec.other(party)]
            self.note(party, request, other)
            released[party] = job.release(request, sid, other)
        self.note("coordinator", *released.values())
        return coordinator.assemble(self.spec, SCHEMA.domain, cliques, released)

    def note(self, who: str, *messages: Any) -> None:
        self.received.setdefault(who, []).extend(messages)


def party_job(
    party: str, frame: pd.DataFrame, spec: VerticalSpec, *, plain: bool = False, noise: Any = zero_noise
) -> VerticalJob:
    schema = spec.party_schema(SCHEMA, party)
    codes = encode(schema, frame[list(schema.names)], source=party).codes
    keys = [normalise_key(k) for k in frame["email"]]
    factory = PlainScheme if plain else cached_key(party)
    return VerticalJob(
        party, spec, SCHEMA.domain, "test-collab", setup_sid("test-collab", "ab" * 32, "job"),
        IDENTITIES[party], IDENTITIES[spec.other(party)].public_key(), keys, np.asarray(codes),
        scheme_factory=factory, noise=noise,
    )  # fmt: skip


Tamper = Callable[[str, np.ndarray], np.ndarray]


def run_setup(
    parts: dict[str, pd.DataFrame],
    max_rows: int,
    *,
    plain: bool = False,
    noise: Any = zero_noise,
    tamper: Tamper | None = None,
) -> Run:
    """Setup, PSI, encrypted lists and alignment through the real coordinator steps."""
    spec = make_spec(max_rows)
    jobs = {p: party_job(p, parts[p], spec, plain=plain, noise=noise) for p in spec.parties}
    run = Run(spec, jobs)
    setups = {p: job.setup() for p, job in jobs.items()}
    run.note("coordinator", *setups.values())
    blinds = {}
    for party, job in jobs.items():
        other = setups[spec.other(party)]
        run.note(party, other)
        blinds[party] = job.blind(other)
    lists = {p: job.encrypted_list() for p, job in jobs.items()}
    run.note("coordinator", *blinds.values(), *lists.values())
    run.alignment = coordinator.align(spec, blinds, lists)
    for party, job in jobs.items():
        mapping = run.alignment.maps[party]
        if tamper is not None:
            mapping = tamper(party, mapping)
        other = coordinator.peer_copy(lists[spec.other(party)])
        run.note(party, other, mapping)
        job.align(other, mapping)
    return run
