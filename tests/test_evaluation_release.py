"""Evaluation release rules: evaluation_share, the budget split, calibration, the party's split."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from governance_fixtures import write_plan

from cleanroom.accounting import DistributedGaussian, calibrate, cdp_rho
from cleanroom.errors import InvalidInput
from cleanroom.evaluation import release
from cleanroom.plan import Plan
from cleanroom.sample_data import sample_schema


def test_evaluation_share_defaults_and_is_validated(tmp_path: Path) -> None:
    assert Plan.load(write_plan(tmp_path).path).evaluation_share == 0.1
    assert Plan.load(write_plan(tmp_path, overrides={"evaluation_share": "0.4"}).path).evaluation_share == 0.4
    for bad in ("0", "1", "1.5", "-0.1"):
        with pytest.raises(InvalidInput, match=rf"evaluation_share \({float(bad)}\) must be in \(0, 1\)"):
            Plan.load(write_plan(tmp_path, overrides={"evaluation_share": bad}).path)


def test_budget_split_adds_up_to_the_job() -> None:
    job_rho, share = 0.015, 0.25
    parts = [release.statistic_rho(job_rho, share, s) for s in release.STATISTICS]
    sizing = job_rho * share * release.HOLDOUT_SIZING_FRACTION  # each party's noisy row count
    assert release.synthesis_rho(job_rho, share) + sum(parts) + sizing == pytest.approx(job_rho)
    assert 0 < release.holdout_sizing(job_rho, share).rho <= sizing
    with pytest.raises(InvalidInput, match="statistic"):
        release.statistic_rho(job_rho, share, "marginals")


@pytest.mark.parametrize("statistic", release.STATISTICS)
def test_calibrated_noise_stays_within_the_allotment(statistic: str) -> None:
    """What the coordinator requests is what the party accepts: rho from the real sensitivity <= allotment."""
    domain = sample_schema().domain
    length = release.statistic_length(statistic, domain, "classification")
    sensitivity = release.statistic_sensitivity_l2(statistic, domain, "classification")
    target = release.statistic_rho(cdp_rho(1.0, 1e-9), 0.25, statistic)
    sigma_total2 = calibrate(target, sensitivity, 2, n_parties=3, dim=length)
    rho = DistributedGaussian(sigma_total2, 3, 2).rho(sensitivity * np.sqrt(length), sensitivity, length)
    assert rho <= target * (1 + 1e-9)
    halved = DistributedGaussian(Fraction(sigma_total2) / 4, 3, 2)  # a coordinator asking for less noise
    assert halved.rho(sensitivity * np.sqrt(length), sensitivity, length) > target


def test_party_membership_split_is_durable_and_secret_dependent() -> None:
    codes = np.stack([np.arange(1000) % 7, np.arange(1000) // 7], axis=1)
    first = release.party_membership_split(codes, b"secret-a", 0.2)
    again = release.party_membership_split(codes, b"secret-a", 0.2)
    other = release.party_membership_split(codes, b"secret-b", 0.2)
    assert np.array_equal(first.members, again.members)
    assert not np.array_equal(first.members, other.members)
    assert 150 <= len(first.nonmembers) <= 250  # 0.2 in expectation (sd 13)
    smaller = release.party_membership_split(codes, b"secret-a", 0.05)  # nested: a job with fewer non-members
    assert set(smaller.nonmembers) <= set(first.nonmembers) and 25 <= len(smaller.nonmembers) <= 75
    everything = np.concatenate([first.members, first.nonmembers])
    assert np.array_equal(np.sort(everything), np.arange(1000))


def test_model_inputs_match_between_csv_and_synthetic_strings() -> None:
    kinds = {"a": "categorical", "x": "numerical", "y": "categorical", "id": "identifier"}
    raw = pd.DataFrame(
        {"a": [13.0, None, 7.0], "x": ["1.5", "bad", 3], "y": ["yes", None, "no"], "id": [1, 2, 3]}
    )
    x, y = release.model_inputs(raw, "y", "classification", kinds)
    assert list(x.columns) == ["a", "x"] and list(y) == ["yes", "no"]  # the row without a target is dropped
    assert list(x["a"]) == ["13", "7"]  # a float read from a CSV with gaps is the category "13"
    assert list(x["x"]) == [1.5, 3.0]
    assert release.synthetic_holdout_start(100) == 80


def test_gate_of_one_releases_even_unknown_scores_any_lower_gate_fails_closed() -> None:
    from cleanroom.evaluation.membership import gate

    unknown = {"dcr": float("nan")}
    assert gate(unknown, 1.0).released
    assert not gate(unknown, 0.99).released
    assert not gate({"dcr": 0.51}, 0.5).released
