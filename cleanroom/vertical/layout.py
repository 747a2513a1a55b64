"""Slot layouts: what each encrypted entry holds, and which ciphertexts a round's aggregation produces.

A plaintext packs SLOTS = 63 slots of SLOT_BITS = 32 bits (2016 bits < n). Entry vectors:
- the *encryptor* E (spec.encryptor): slot 0 is_real, then the one-hot of each of its columns' levels, in
  its columns' order, split over `n_ciphertexts` ciphertexts;
- the *aggregator* G: slot 0 is_real only (one ciphertext).
Dummies and padding encrypt 0 in every slot.

A round asks for 1-way/2-way cliques (canonical order). Each clique is aggregated by one party and released
by the other (the decryptor):
- own(E) cliques: E sums G's is_real per cell of its own columns; single-slot sums are packed 63 to a
  ciphertext (`Packed`: shift by 32 bits and add);
- own(G) and cross cliques: G sums E's entry ciphertexts per cell of its own columns (`Full`): a 2-way own
  cell uses ciphertext 0 (slot 0 is the count), a 1-way cell of G's column j carries, in the one-hot slots,
  the cross tables (j, c) with E's columns c.
A `Full` ciphertext holds slots the round did not ask for (the other E columns): the aggregator noises them
with SIGMA_EXTRA2 = 2^40 (they are "extra tables", seen only by the decryptor, charged at
1 / (2 * 2^40) each, about 5e-13) and the asked-for slots with the round's variance. Every slot holds
OFFSET + count + noise, which stays inside its 32 bits: count < 2^24 (max_rows), |noise| < 2^29.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from cleanroom.accounting import gaussian_rho
from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.vertical.spec import SLOTS_PER_CIPHERTEXT, VerticalSpec

SLOT_BITS = 32
SLOTS = SLOTS_PER_CIPHERTEXT  # 63
OFFSET = 1 << 30
NOISE_BOUND = 1 << 29
SIGMA_EXTRA2 = Fraction(1 << 40)
MAX_SIGMA2 = Fraction(1 << 40)  # a round's per-party variance; beyond it noise could leave its slot
VERTICAL_RELEASES = (
    "vertical:aggregate",
    "vertical:release",
)  # tests/test_vertical_sensitivity.py covers each
SlotRef = tuple[int, int]  # (index of the clique in the round, flat cell of its table)


@dataclass(frozen=True)
class EntryLayout:
    """The slots of one party's entry vector: `offsets[c]` is the global slot of level 0 of column c."""

    columns: tuple[str, ...]  # one-hot columns (empty for the aggregator)
    sizes: tuple[int, ...]

    @property
    def n_slots(self) -> int:
        return 1 + sum(self.sizes)

    @property
    def n_ciphertexts(self) -> int:
        return math.ceil(self.n_slots / SLOTS)

    def offset(self, column: str) -> int:
        index = self.columns.index(column)
        return 1 + sum(self.sizes[:index])

    def plaintexts(self, codes: npt.NDArray[np.integer]) -> list[list[int]]:
        """Per ciphertext t, the plaintext of every record (rows of `codes`: this party's columns)."""
        n = codes.shape[0]
        values = [[0] * n for _ in range(self.n_ciphertexts)]
        for r in range(n):
            values[0][r] = 1  # is_real
        for j, column in enumerate(self.columns):
            base = self.offset(column)
            for r in range(n):
                slot = base + int(codes[r, j])
                values[slot // SLOTS][r] += 1 << (SLOT_BITS * (slot % SLOTS))
        return values

    @classmethod
    def for_party(cls, spec: VerticalSpec, domain: Domain, party: str) -> EntryLayout:
        if party != spec.encryptor:
            return cls((), ())
        columns = spec.columns[party]
        return cls(tuple(columns), tuple(domain.size(c) for c in columns))


@dataclass(frozen=True)
class Full:
    """Sum of the other's ciphertext `t` over the records in `cell` of `group` (this party's columns)."""

    group: Clique
    cell: int
    t: int
    slots: tuple[SlotRef | None, ...]  # per slot of ciphertext t: what it carries, None = extra


@dataclass(frozen=True)
class Packed:
    """Single-slot sums (the other party's is_real) of several cells, one per slot."""

    items: tuple[tuple[Clique, int, SlotRef], ...]  # (group, cell, what it is) in slot order


Output = Full | Packed


@dataclass(frozen=True)
class RoundLayout:
    """Who aggregates, who releases, and the exact list of ciphertexts of one round (public)."""

    spec: VerticalSpec
    domain: Domain
    cliques: tuple[Clique, ...]

    def __post_init__(self) -> None:
        for clique in self.cliques:
            if not 1 <= len(clique) <= 2 or tuple(clique) != self.domain.canonical(clique):
                raise InvalidInput(f"clique {clique} is not a canonical 1-way or 2-way marginal")

    def aggregator_of(self, clique: Clique) -> str:
        kind = self.spec.clique_kind(clique)
        return self.spec.aggregator if kind == "cross" else kind.split(":", 1)[1]

    def released_by(self, party: str) -> tuple[int, ...]:
        """Indices of the cliques `party` decrypts and releases (those the other party aggregates)."""
        other = self.spec.other(party)
        return tuple(i for i, c in enumerate(self.cliques) if self.aggregator_of(c) == other)

    def cells(self, index: int) -> int:
        return self.domain.project(self.cliques[index]).size()

    def outputs(self, aggregator: str) -> list[Output]:
        if aggregator == self.spec.encryptor:
            return self._packed(aggregator)
        return self._full(aggregator)

    def _packed(self, party: str) -> list[Output]:
        items = [
            (self.cliques[i], cell, (i, cell))
            for i, clique in enumerate(self.cliques)
            if self.aggregator_of(clique) == party
            for cell in range(self.cells(i))
        ]
        return [Packed(tuple(items[s : s + SLOTS])) for s in range(0, len(items), SLOTS)]

    def _full(self, party: str) -> list[Output]:
        layout = EntryLayout.for_party(self.spec, self.domain, self.spec.other(party))
        out: list[Output] = []
        for group, wanted in self._families(party, layout):
            for cell in range(self.domain.project(group).size()):
                for t in sorted({slot // SLOTS for slot in wanted}):
                    slots: list[SlotRef | None] = [None] * SLOTS
                    for slot, (index, level) in wanted.items():
                        if slot // SLOTS == t:
                            slots[slot % SLOTS] = (index, self._cross_cell(index, group, cell, level))
                    out.append(Full(group, cell, t, tuple(slots)))
        return out

    def _families(self, party: str, layout: EntryLayout) -> list[tuple[Clique, dict[int, tuple[int, int]]]]:
        """(group clique, {global slot of the other's layout: (clique index, level or -1 for is_real)})."""
        families: dict[Clique, dict[int, tuple[int, int]]] = {}
        for i, clique in enumerate(self.cliques):
            if self.aggregator_of(clique) != party:
                continue
            mine = tuple(c for c in clique if self.spec.owner(c) == party)
            wanted = families.setdefault(mine, {})
            if len(mine) == len(clique):
                wanted[0] = (i, -1)
            else:
                theirs = next(c for c in clique if c not in mine)
                base = layout.offset(theirs)
                for level in range(self.domain.size(theirs)):
                    wanted[base + level] = (i, level)
        return list(families.items())  # in order of first appearance

    def _cross_cell(self, index: int, group: Clique, cell: int, level: int) -> int:
        """Flat cell of clique `index` for this party's `cell` of `group` and the other's `level`."""
        if level < 0:
            return cell
        clique = self.cliques[index]
        codes = tuple(cell if a in group else level for a in clique)
        return int(np.ravel_multi_index(codes, self.domain.project(clique).shape))

    def extra_tables(self) -> int:
        """Tables the decryptor of `Full` ciphertexts sees beyond those asked for (noised at SIGMA_EXTRA2):
        per family, every part of the entry vector (is_real, each column) that shares a computed ciphertext
        but was not asked for."""
        layout = EntryLayout.for_party(self.spec, self.domain, self.spec.encryptor)
        parts = [(0, 0)] + [(layout.offset(c), layout.offset(c) + size - 1)
                            for c, size in zip(layout.columns, layout.sizes, strict=True)]  # fmt: skip
        extra = 0
        for _, wanted in self._families(self.spec.aggregator, layout):
            computed = {slot // SLOTS for slot in wanted}
            for first, last in parts:
                overlaps = any(first // SLOTS <= t <= last // SLOTS for t in computed)
                asked = any(first <= slot <= last for slot in wanted)
                extra += int(overlaps and not asked)
        return extra

    def rho(self, sigma2: Fraction) -> float:
        """What each party charges: every asked-for table at `sigma2`, every extra table at SIGMA_EXTRA2."""
        requested = gaussian_rho(math.sqrt(len(self.cliques)), sigma2)
        extra = self.extra_tables()
        return requested + (gaussian_rho(math.sqrt(extra), SIGMA_EXTRA2) if extra else 0.0)


def pack(values: Sequence[int]) -> int:
    """Slot values (each in [0, 2^32)) -> one plaintext integer, slot 0 in the low bits."""
    out = 0
    for s, value in enumerate(values):
        out |= int(value) << (SLOT_BITS * s)
    return out


def unpack(plaintext: int, count: int = SLOTS) -> list[int]:
    mask = (1 << SLOT_BITS) - 1
    return [(plaintext >> (SLOT_BITS * s)) & mask for s in range(count)]
