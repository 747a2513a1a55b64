"""How a job's evaluation is released: statistic kinds, vector shapes and sensitivities, the budget split.

Shared by the party node (which checks and computes) and the coordinator (which requests and combines), so
both derive every number from the plan and the schema alone:
- a job's budget `rho_for(max_epsilon_per_job, delta)` is split into synthesis `(1 - evaluation_share)` and
  evaluation `evaluation_share`, the latter across the statistics by `BUDGET_FRACTIONS` (utility 30 %,
  fidelity 50 %, the DCR attack 20 %: its histogram has L2 sensitivity 1 and few cells, so it needs least);
- each statistic is one secure-aggregation round of a fixed-length int64 vector (`statistic_length`) whose
  per-record L2 sensitivity (`statistic_sensitivity_l2`, in the vector's fixed-point units) sets the noise;
  every statistic is a total function of the party's rows (no value, and no number of rows, makes it
  raise), and its sensitivity is proved in docs/evaluation.md and checked by
  tests/test_release_sensitivity.py through the party's real code path;
- the member/non-member split is per record (`party_membership_split`, a keyed hash of each record), with
  a holdout fraction each party sizes for the job from its own noisy row count (`holdout_sizing`,
  `holdout_fraction`): about `HOLDOUT_NONMEMBERS` non-members in all, so a large job loses a small share
  of its rows to the evaluation and a small one keeps enough non-members for the attack score;
- model inputs are prepared the same way for training (coordinator) and scoring (party): `model_inputs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput
from cleanroom.evaluation.fidelity import default_fidelity_cliques, tvd_sensitivity_l2
from cleanroom.evaluation.membership import (
    DCR_SENSITIVITY_L2,
    MembershipSplit,
    dcr_vector_length,
    membership_split,
)
from cleanroom.evaluation.utility import (
    CLASSIFICATION_SENSITIVITY_L2,
    REGRESSION_VECTOR_LENGTH,
    TargetBounds,
    classification_vector_length,
    regression_sensitivity_l2,
)
from cleanroom.schema import Schema

if TYPE_CHECKING:  # pandas only where frames are used: the coordinator's rounds need no pandas
    import pandas as pd

UTILITY = "utility"
FIDELITY = "fidelity"
ATTACK_DCR = "attack:dcr"
STATISTICS = (UTILITY, FIDELITY, ATTACK_DCR)
BUDGET_FRACTIONS = {UTILITY: 0.3, FIDELITY: 0.45, ATTACK_DCR: 0.2}
HOLDOUT_SIZING_FRACTION = 0.05  # of the evaluation share: each party's noisy row count (never sent)
HOLDOUT_NONMEMBERS = 2000  # expected non-members of a job, all parties together
HOLDOUT_BOUNDS = (0.05, 0.3)  # the holdout fraction a party uses, whatever its noisy row count
MEMBERSHIP_HOLDOUT = 0.2  # the fraction of the benchmark's fixed-holdout option and of older releases
SYNTHETIC_HOLDOUT = 0.2  # share of the synthetic rows the model is not trained on (synthetic-holdout metrics)
MISSING_LEVEL = "__missing__"


def attack_name(statistic: str) -> str:
    """`attack:dcr` -> `dcr` (the name `cleanroom.evaluation.membership` uses)."""
    return statistic.split(":", 1)[1]


def check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise InvalidInput(f"statistic ({statistic!r}) must be one of {STATISTICS}")


def synthesis_rho(job_rho: float, evaluation_share: float) -> float:
    """The part of a job's rho the synthesizer's marginal rounds may spend."""
    return job_rho * (1.0 - evaluation_share)


def statistic_rho(job_rho: float, evaluation_share: float, statistic: str) -> float:
    """The rho allotted to one evaluation statistic of a job."""
    check_statistic(statistic)
    return job_rho * evaluation_share * BUDGET_FRACTIONS[statistic]


def fidelity_cliques(domain: Domain) -> tuple[Clique, ...]:
    return default_fidelity_cliques(domain)


def statistic_length(statistic: str, domain: Domain, task: str) -> int:
    """Cells of the statistic's vector."""
    check_statistic(statistic)
    if statistic == UTILITY:
        return classification_vector_length() if task == "classification" else REGRESSION_VECTOR_LENGTH
    if statistic == FIDELITY:
        return 1 + len(fidelity_cliques(domain))
    return dcr_vector_length()


def statistic_sensitivity_l2(statistic: str, domain: Domain, task: str) -> float:
    """Per-record L2 sensitivity of the statistic's vector, in its own (fixed-point) integer units."""
    check_statistic(statistic)
    if statistic == UTILITY:
        return CLASSIFICATION_SENSITIVITY_L2 if task == "classification" else regression_sensitivity_l2()
    if statistic == FIDELITY:
        return tvd_sensitivity_l2(fidelity_cliques(domain))
    return DCR_SENSITIVITY_L2


def positive_class(schema: Schema, target: str) -> str:
    """The class whose probability is scored: the target's second category (its first if it has one)."""
    column = next((c for c in schema.columns if c.name == target), None)
    if column is None or not column.categories:
        raise InvalidInput(f"schema: target {target!r} is not a categorical column with categories")
    return str(column.categories[1] if len(column.categories) > 1 else column.categories[0])


def target_bounds(schema: Schema, target: str) -> TargetBounds:
    column = next((c for c in schema.columns if c.name == target), None)
    if column is None or column.lower is None or column.upper is None:
        raise InvalidInput(f"schema: target {target!r} is not a numerical column with lower/upper")
    return TargetBounds(float(column.lower), float(column.upper))


def _category_text(value: object) -> str:
    """Categories compare as strings; a float 13.0 read from a CSV column with gaps means "13"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def model_inputs(
    frame: pd.DataFrame, target: str, task: str, kinds: dict[str, str]
) -> tuple[pd.DataFrame, pd.Series]:
    """Feature frame and target of the rows whose target is known, prepared as the model expects."""
    import pandas as pd

    features = [c for c, k in kinds.items() if c != target and k != "identifier"]
    if task == "classification":
        y = frame[target].astype(object)
    else:
        y = pd.to_numeric(frame[target], errors="coerce")
    keep = y.notna().to_numpy()
    rows = frame[keep]
    x = rows[features].copy()
    for c in features:
        if kinds[c] == "numerical":
            x[c] = pd.to_numeric(x[c], errors="coerce").astype(float)  # HistGradientBoosting handles NaN
        else:
            column = x[c].astype(object)
            x[c] = column.where(column.notna(), MISSING_LEVEL).map(_category_text).astype(str)
    labels = y[keep].map(_category_text) if task == "classification" else y[keep].astype(float)
    return x, labels


def synthetic_holdout_start(n_rows: int) -> int:
    """Rows [0, start) of the synthetic data train the model; rows [start, n) score it."""
    return max(1, min(n_rows - 1, int(math.floor(n_rows * (1.0 - SYNTHETIC_HOLDOUT)))))


def party_membership_split(codes: np.ndarray, secret: bytes, fraction: float) -> MembershipSplit:
    """A party's split of its encoded rows: per record (a keyed hash of the record), durable across restarts
    and row orders, unpredictable to anyone without the party's secret; about `fraction` are non-members."""
    return membership_split(codes, secret, fraction)


@dataclass(frozen=True)
class HoldoutSizing:
    """The noisy row count a party sizes its membership holdout with: a discrete Gaussian of variance
    `sigma2` on its number of records (sensitivity 1 under add/remove-one), zCDP cost `rho` = 1/(2 sigma2).

    The count is never sent: it only sets the fraction of the per-record split, so the synthesis rounds
    after it are chosen adaptively from a DP output, and the job's rho is the sum (adaptive composition).
    """

    sigma2: Fraction
    rho: float


def holdout_sizing(job_rho: float, evaluation_share: float) -> HoldoutSizing:
    """The sizing every party of a job charges, from the plan alone (the coordinator records the same)."""
    allotted = job_rho * evaluation_share * HOLDOUT_SIZING_FRACTION
    if not allotted > 0:
        raise InvalidInput(f"holdout sizing rho ({allotted}) must be > 0")
    sigma2 = Fraction(math.ceil(1 / (2 * allotted)))  # an integer variance, so rho never exceeds the share
    return HoldoutSizing(sigma2, float(1 / (2 * sigma2)))


def holdout_fraction(noisy_rows: float, n_parties: int) -> float:
    """A party's holdout fraction: its share of `HOLDOUT_NONMEMBERS` over its noisy row count, in bounds."""
    if n_parties < 1:
        raise InvalidInput(f"n_parties ({n_parties}) must be >= 1")
    low, high = HOLDOUT_BOUNDS
    wanted = HOLDOUT_NONMEMBERS / n_parties / max(float(noisy_rows), 1.0)
    return float(min(max(wanted, low), high))
