"""Checks that a job can produce a usable result, made from the plan and the schema before anything is spent.

Everything here depends on public inputs only (plan, schema, command-line values), never on rows:
- the target exists in the schema, is a measured column and fits the task (classification: a categorical
  column with at least 2 categories; regression: a numerical column);
- `synthetic_rows`, when given, is at least `MIN_SYNTHETIC_ROWS` (a model needs rows to train and score on);
- the synthesizer settings are ones the plan's synthesizer (adaptive or MST) accepts;
- one job's epsilon is within what the noise floor allows: every party's share of noise is kept at sigma >= 2
  (`cleanroom.accounting.MIN_PARTY_SIGMA2`), so for a given schema and number of honest shares (n_min) each
  round, and each evaluation statistic, has a largest rho it can spend; above it the extra budget could
  not buy anything, and a party would refuse the round. `noise_floor` computes that cap.

`cleanroom.plan.Plan.check_schema` runs `check_job` for every plan (`plan show`, `plan approve`,
`coordinator run`, a party's start-up); `cleanroom simulate` and `cleanroom demo` run it on their flags before
they start any process. Messages name no file: callers prefix their own (the plan file, or the flag).
A party's own start-up check of its row count (`MIN_PARTY_ROWS`) is local; no count ever crosses the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cleanroom.accounting import MIN_PARTY_SIGMA2, cdp_eps, cdp_rho
from cleanroom.errors import InvalidInput
from cleanroom.schema import CATEGORICAL, NUMERICAL, Schema

MIN_PARTY_ROWS = 20  # about 4 of them fall in the 20 % membership holdout (non-members) the attacks need
DEFAULT_SYNTHESIZER = "adaptive"  # the plan's default (cleanroom.synth.planners re-exports it)
DEFAULT_EVALUATION_SHARE = 0.1  # the plan's default share of a job's budget for evaluation
MIN_SYNTHETIC_ROWS = 100  # the model trains on 80 % of the synthetic rows and is scored on the other 20 %


@dataclass(frozen=True)
class Fields:
    """How the user names each input, for messages: the plan's keys, or command-line flags."""

    schema: str = "the schema"
    target: str = "target"
    task: str = "task"
    synthetic_rows: str = "synthetic_rows"
    epsilon: str = "max_epsilon_per_job (or epsilon)"
    delta: str = "delta"


PLAN_FIELDS = Fields()


def check_target(schema: Schema, target: str, task: str, fields: Fields = PLAN_FIELDS) -> None:
    """The target is a measured column of the schema whose type fits the task."""
    if target not in schema.names:
        raise InvalidInput(
            f"{fields.target} {target}: not a column of {fields.schema}; its columns are "
            f"{', '.join(schema.names)}"
        )
    column = schema.column(target)
    if not column.measured:
        raise InvalidInput(
            f"{fields.target} {target}: an identifier column of {fields.schema} (never measured); choose a "
            "numerical or categorical column"
        )
    wanted = {"classification": CATEGORICAL, "regression": NUMERICAL}[task]
    if column.type != wanted:
        other = "regression" if task == "classification" else "classification"
        raise InvalidInput(
            f"{fields.task} {task} needs a {wanted} target, but {target} is {column.type} in "
            f"{fields.schema}; use {fields.task} {other} or another {fields.target}"
        )
    if task == "classification" and len(column.categories) < 2:
        raise InvalidInput(
            f"{fields.task} classification needs at least 2 categories in {target}, {fields.schema} lists "
            f"{len(column.categories)}"
        )


def check_synthetic_rows(synthetic_rows: int, fields: Fields = PLAN_FIELDS) -> None:
    if 0 < synthetic_rows < MIN_SYNTHETIC_ROWS:
        raise InvalidInput(
            f"{fields.synthetic_rows} {synthetic_rows} is too few: use 0 (the noisy total) or at least "
            f"{MIN_SYNTHETIC_ROWS} (the model trains on 80 % of them and is scored on the rest)"
        )


@dataclass(frozen=True)
class NoiseFloor:
    """The largest zCDP rho one job may spend for a schema, task and n_min (every party's sigma >= 2)."""

    max_rho: float
    release: str  # the round ("tree") or statistic ("attack:dcr") whose noise reaches the floor first
    limited_by: str  # the same in words ("the MST tree round", "the DCR evaluation statistic")


def job_planner(
    schema: Schema, synthesizer: str, target: str, n_min: int, n_parties: int, settings: Mapping[str, Any]
) -> Any:
    """The planner the coordinator uses for this plan (rho 1: only the round structure matters)."""
    from cleanroom.synth import make_planner

    return make_planner(
        synthesizer, schema, 1.0, n_min=n_min, n_parties=n_parties, settings=settings, target=target
    )


def noise_floor(
    schema: Schema, task: str, n_min: int, n_parties: int, evaluation_share: float,
    settings: Mapping[str, Any] | None = None, synthesizer: str = DEFAULT_SYNTHESIZER, target: str = "",
) -> NoiseFloor:  # fmt: skip
    """Cap on one job's rho: each round of K tables (or statistic of L2 sensitivity s) that gets a share f
    of the job's rho needs sigma_party^2 = K / (2 f rho n_min) >= 4, i.e. rho <= K / (8 f n_min)."""
    from cleanroom.evaluation import release

    planner = job_planner(schema, synthesizer, target, n_min, n_parties, settings or {})
    floor = float(MIN_PARTY_SIGMA2)
    synthesis = 1.0 - evaluation_share
    caps = {
        name: tables / (2 * floor * share * synthesis * n_min)
        for name, tables, share in planner.fixed_round_sizes()  # refinement rounds do not cap
    }
    words = {name: f"the {synthesizer} synthesizer's {name} round" for name in caps}
    for statistic in release.STATISTICS:
        fraction = release.statistic_rho(1.0, evaluation_share, statistic)
        sensitivity = release.statistic_sensitivity_l2(statistic, schema.domain, task)
        caps[statistic] = sensitivity**2 / (2 * floor * fraction * n_min)
        short = statistic.rpartition(":")[2]
        words[statistic] = f"the {short.upper() if len(short) <= 4 else short} evaluation statistic"
    first = min(caps, key=lambda name: caps[name])
    return NoiseFloor(caps[first], first, words[first])


def _short(value: float) -> str:
    """1e-09 -> 1e-9."""
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _round_down(value: float, digits: int = 3) -> float:
    """`value` rounded down to `digits` significant digits (a cap shown to a user must itself be allowed)."""
    if value <= 0:
        return value
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(value)))
    return math.floor(value * scale) / scale


def check_epsilon(
    epsilon: float, delta: float, floor: NoiseFloor, n_min: int, measured: int, fields: Fields = PLAN_FIELDS
) -> None:
    """Refuse a job epsilon whose rho the noise floor cannot honour."""
    if cdp_rho(epsilon, delta) <= floor.max_rho * (1 + 1e-9):
        return
    cap = _round_down(cdp_eps(floor.max_rho, delta))
    raise InvalidInput(
        f"epsilon {epsilon:g} is too large for this plan: with {measured} measured columns and n_min "
        f"{n_min} honest parties the per-party noise cannot go below sigma 2 ({floor.limited_by} reaches it "
        f"first), so one job can spend at most epsilon {cap:g} at delta {_short(delta)}; set "
        f"{fields.epsilon} <= {cap:g}"
    )


def check_job(
    schema: Schema, *, target: str, task: str, epsilon: float, delta: float, n_min: int, n_parties: int,
    evaluation_share: float = DEFAULT_EVALUATION_SHARE, synthetic_rows: int = 0,
    settings: Mapping[str, Any] | None = None, synthesizer: str = DEFAULT_SYNTHESIZER,
    fields: Fields = PLAN_FIELDS,
) -> None:  # fmt: skip
    """Every check of a job that can be made from public inputs; raises InvalidInput naming `fields`."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise InvalidInput(f"{fields.epsilon} {epsilon:g} must be a finite number > 0")
    if not 0 < delta < 1:
        raise InvalidInput(f"{fields.delta} {delta:g} must be in (0, 1)")
    check_target(schema, target, task, fields)
    check_synthetic_rows(synthetic_rows, fields)
    floor = noise_floor(schema, task, n_min, n_parties, evaluation_share, settings, synthesizer, target)
    check_epsilon(epsilon, delta, floor, n_min, len(schema.domain), fields)
