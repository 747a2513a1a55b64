"""Choosing a synthesizer by the plan's `synthesizer` name: the planner the coordinator drives round by round.

Every planner has the same interface (`first_round()`, `next_round(measurements)`, `estimate(measurements)`,
`rho_total`), asks only for 1-way and 2-way marginal count tables of schema columns, and plans rounds whose
`RoundSpec.rho` sum to at most `rho_total`. `make_planner` also passes what the schema says publicly about
levels: which codes are the reserved `__missing__` / `__other__` levels (dropped when their noisy count says
they are empty) and which columns are ordinal (numerical bins, merged only with neighbouring bins).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cleanroom.accounting import NoiseLayout
from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement, RoundSpec
from cleanroom.schema import NUMERICAL, Schema
from cleanroom.synth.adaptive import AdaptivePlanner
from cleanroom.synth.estimation import EstimationConfig
from cleanroom.synth.mst import MSTPlanner


class Sampler(Protocol):
    def sample(self, n_rows: int, rng: Any) -> Any: ...


class Planner(Protocol):
    """What the coordinator needs from a synthesizer."""

    @property
    def rho_total(self) -> float: ...

    def first_round(self) -> RoundSpec: ...

    def next_round(self, measurements: Sequence[Measurement]) -> RoundSpec | None: ...

    def estimate(self, measurements: Sequence[Measurement]) -> Sampler: ...


PLANNERS: dict[str, Any] = {"mst": MSTPlanner, "adaptive": AdaptivePlanner}
INTERNAL_SETTINGS = ("n_min", "n_parties", "colluders", "noise_shares", "special_levels", "ordinal")


def schema_hints(schema: Schema) -> tuple[dict[str, tuple[int, ...]], frozenset[str]]:
    """Reserved level codes per column, and the ordinal (numerical) columns, from the public schema."""
    special: dict[str, tuple[int, ...]] = {}
    for column in schema.measured_columns:
        codes = tuple(c for c in (column.other_code, column.missing_code) if c is not None)
        if codes:
            special[column.name] = codes
    ordinal = frozenset(c.name for c in schema.measured_columns if c.type == NUMERICAL)
    return special, ordinal


def _setting(value: Any) -> Any:
    """A plan's TOML value as a planner field: arrays -> tuples, tables -> `EstimationConfig`."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, Mapping):
        return EstimationConfig(**value)
    return value


def make_planner(
    synthesizer: str,
    schema: Schema | Domain,
    rho_total: float,
    *,
    n_min: int = 1,
    n_parties: int | None = None,
    settings: Mapping[str, Any] | None = None,
    target: str | None = None,
    layout: NoiseLayout | None = None,
) -> Planner:
    """The planner named `synthesizer` for `schema` (or a bare domain) within `rho_total` (zCDP); `target`
    (the plan's) overrides the schema's target flag; `layout` (the plan's) replaces n_min and n_parties."""
    layout = layout or NoiseLayout(n_parties or n_min, n_min)
    if synthesizer not in PLANNERS:
        raise InvalidInput(f"synthesizer ({synthesizer!r}) must be one of {sorted(PLANNERS)}")
    settings = {k: _setting(v) for k, v in (settings or {}).items()}
    clash = sorted(set(INTERNAL_SETTINGS) & set(settings))
    if clash:
        raise InvalidInput(f"synthesizer_settings may not set {clash}: they come from the plan and schema")
    if isinstance(schema, Schema):
        special, ordinal = schema_hints(schema)
        settings.update(special_levels=special, ordinal=ordinal)
        if synthesizer == "adaptive":
            settings.setdefault("target", target or schema.target)
        domain = schema.domain
    else:
        domain = schema
    check_setting_names(synthesizer, settings)
    try:
        planner: Planner = PLANNERS[synthesizer](
            domain, rho_total, n_min=layout.n_min, n_parties=layout.n_parties, colluders=layout.colluders,
            noise_shares=layout.shares, **settings,
        )  # fmt: skip
    except TypeError as error:
        raise InvalidInput(f"synthesizer_settings for {synthesizer!r}: {error}") from None
    return planner


def check_setting_names(synthesizer: str, settings: Mapping[str, Any]) -> None:
    """Refuse keys the planner does not take, listing the ones it does (a typo must not pass silently)."""
    parameters = inspect.signature(PLANNERS[synthesizer]).parameters
    known = sorted(set(parameters) - {"domain", "rho_total", *INTERNAL_SETTINGS})
    unknown = sorted(set(settings) - set(parameters))
    if unknown:
        raise InvalidInput(
            f"synthesizer_settings: unknown keys {unknown} for synthesizer {synthesizer!r} "
            f"(known: {', '.join(known)})"
        )
