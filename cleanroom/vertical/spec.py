"""What a vertical plan agrees on: the join key, which party holds which columns, the public row bounds.

A vertical plan (`partitioning = "vertical"`) has exactly two data parties holding different columns about
shared records, joined on one identifier column of the schema marked `"join_key": true`:

```toml
partitioning = "vertical"

[vertical]
join_key = "email"                  # the schema's join_key identifier column
max_rows = 40000                    # public bound on each party's records (or a table: airline = 40000, ...)

[vertical.columns]                  # every measured column of the schema at exactly one party
airline = ["flights", "miles", "cabin"]
hotel = ["stays", "spend", "loyalty", "high_value"]      # the target's holder
```

The joined table is the inner join on the normalised key (`normalise_key`: trimmed, lower-cased text);
records whose key is empty join nothing, and a party whose normalised keys repeat refuses to start. Every
list a party sends is padded to the public bounds, so its size says nothing about the party's row count.
Roles follow from public facts only: the *encryptor* (fewer ciphertexts per record; on a tie, more cells in
its own 2-way tables) encrypts the one-hot vectors of its records; the other party, the *aggregator*, sums
them per level of its own columns (docs/vertical.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cleanroom.domain import Clique
from cleanroom.errors import InvalidInput
from cleanroom.schema import Schema

VERTICAL = "vertical"
MAX_ROWS_LIMIT = 1 << 24  # counts must fit the slot layout (cleanroom.vertical.layout)
SLOTS_PER_CIPHERTEXT = 63  # 32-bit slots in a plaintext below a 2048-bit n (cleanroom.vertical.layout)


def normalise_key(value: object) -> str:
    """The join rule: the key's text, trimmed and lower-cased (e-mail addresses); "" for a missing key."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip().lower()


def is_vertical(plan: Any) -> bool:
    return str(getattr(plan, "partitioning", "horizontal")) == VERTICAL


@dataclass(frozen=True)
class VerticalSpec:
    """The vertical part of a plan, validated against the schema; parties in plan order."""

    join_key: str
    columns: Mapping[str, tuple[str, ...]]
    max_rows: Mapping[str, int]
    target_party: str
    levels: Mapping[str, int] = field(default_factory=dict)  # party -> sum of its columns' level counts
    pair_cells: Mapping[str, int] = field(default_factory=dict)  # party -> cells of all its 2-way tables

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))
        object.__setattr__(self, "max_rows", MappingProxyType(dict(self.max_rows)))
        object.__setattr__(self, "levels", MappingProxyType(dict(self.levels)))
        object.__setattr__(self, "pair_cells", MappingProxyType(dict(self.pair_cells)))
        if len(self.columns) != 2:
            raise InvalidInput(f"[vertical] needs exactly two data parties, got {len(self.columns)}")
        for party, bound in self.max_rows.items():
            if not 1 <= bound <= MAX_ROWS_LIMIT:
                raise InvalidInput(
                    f"[vertical] max_rows of {party} ({bound}) must be in [1, {MAX_ROWS_LIMIT}]"
                )

    @property
    def parties(self) -> tuple[str, str]:
        first, second = tuple(self.columns)
        return first, second

    def other(self, party: str) -> str:
        first, second = self.parties
        if party not in (first, second):
            raise InvalidInput(f"party {party!r} is not a data party of the vertical plan")
        return second if party == first else first

    @property
    def encryptor(self) -> str:
        """The party whose one-hot vectors are encrypted: fewer ciphertexts per record; on a tie, the party
        with more 2-way cells of its own (the aggregator decrypts its own cells one ciphertext each)."""
        first, second = self.parties

        def cost(party: str) -> tuple[int, int]:
            slots = self.levels.get(party, 0) + 1  # is_real and the one-hot
            return -(-slots // SLOTS_PER_CIPHERTEXT), -self.pair_cells.get(party, 0)

        return second if cost(second) < cost(first) else first

    @property
    def aggregator(self) -> str:
        return self.other(self.encryptor)

    def owner(self, column: str) -> str:
        for party, columns in self.columns.items():
            if column in columns:
                return party
        raise InvalidInput(f"column {column!r} is held by no party of the vertical plan")

    def list_size(self, party: str) -> int:
        """Entries of a party's encrypted list: its own bound (records, padding) + the other's (dummies)."""
        return self.max_rows[party] + self.max_rows[self.other(party)]

    def clique_kind(self, clique: Clique) -> str:
        """`own:<party>` when one party holds every column of the clique, else `cross`."""
        owners = {self.owner(c) for c in clique}
        return f"own:{owners.pop()}" if len(owners) == 1 else "cross"

    def party_schema(self, schema: Schema, party: str) -> Schema:
        """The schema of one party's data: the join key and its own columns (the target if it holds it)."""
        keep = {self.join_key, *self.columns[party]}
        return Schema(tuple(c for c in schema.columns if c.name in keep), schema.policy)

    @classmethod
    def from_plan(cls, plan: Any, schema: Schema) -> VerticalSpec:
        where = f"{getattr(plan, 'source', '<plan>')}: [vertical]"
        table = dict(getattr(plan, "sections", {}).get("vertical") or {})
        if not table:
            raise InvalidInput(f'{where} table is missing (partitioning = "vertical" needs it)')
        unknown = sorted(set(table) - {"join_key", "max_rows", "columns"})
        if unknown:
            raise InvalidInput(f"{where}: unknown fields {unknown}")
        parties = [m.id for m in plan.data_parties]
        columns = _columns(table.get("columns"), parties, where)
        key = _join_key(table.get("join_key"), schema, where)
        _check_coverage(schema, columns, where)
        target = str(plan.target)
        holders = [p for p, cols in columns.items() if target in cols]
        if len(holders) != 1:
            raise InvalidInput(f"{where}: the target {target!r} must be listed at exactly one party")
        sizes = {p: [schema.column(c).n_levels for c in cols] for p, cols in columns.items()}
        levels = {p: sum(s) for p, s in sizes.items()}
        pairs = {p: (sum(s) ** 2 - sum(x * x for x in s)) // 2 for p, s in sizes.items()}
        rows = _max_rows(table.get("max_rows"), parties, where)
        return cls(key, columns, rows, holders[0], levels, pairs)


def _columns(value: Any, parties: list[str], where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: columns must be a table of party = [column, ...]")
    if sorted(value) != sorted(parties):
        raise InvalidInput(f"{where}: columns names parties {sorted(value)}, the data parties are {parties}")
    out = {}
    for party in parties:  # plan order
        listed = value[party]
        if not isinstance(listed, list) or not listed or not all(isinstance(c, str) for c in listed):
            raise InvalidInput(f"{where}: columns.{party} must be a non-empty list of column names")
        out[party] = tuple(listed)
    return out


def _join_key(value: Any, schema: Schema, where: str) -> str:
    keys = [c.name for c in schema.columns if c.join_key]
    if not isinstance(value, str) or value not in schema.names:
        raise InvalidInput(f"{where}: join_key ({value!r}) must name a column of the schema")
    if keys != [value]:
        raise InvalidInput(
            f'{where}: join_key {value!r} must be the schema\'s one identifier column marked "join_key": true'
        )
    return value


def _check_coverage(schema: Schema, columns: dict[str, tuple[str, ...]], where: str) -> None:
    measured = [c.name for c in schema.measured_columns]
    listed = [c for cols in columns.values() for c in cols]
    repeated = sorted({c for c in listed if listed.count(c) > 1})
    if repeated:
        raise InvalidInput(f"{where}: columns {repeated} are listed at both parties")
    unknown = sorted(set(listed) - set(measured))
    if unknown:
        raise InvalidInput(f"{where}: columns {unknown} are not measured columns of the schema")
    missing = [c for c in measured if c not in listed]
    if missing:
        raise InvalidInput(f"{where}: measured columns {missing} are held by no party")


def _max_rows(value: Any, parties: list[str], where: str) -> dict[str, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return dict.fromkeys(parties, value)
    integers = isinstance(value, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    )
    if integers and sorted(value) == sorted(parties):
        return {p: int(value[p]) for p in parties}
    raise InvalidInput(f"{where}: max_rows must be an integer or a table party = integer for {parties}")
