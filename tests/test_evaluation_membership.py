"""Membership inference: attacks detect copied members and not independent samples; additivity; the gate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.evaluation.membership import (
    ATTACKS,
    FeatureSpace,
    attack_rank_statistics,
    attack_statistics,
    codes_max_distance,
    combined_attack_score,
    combined_rank_score,
    dcr_scores,
    density_ratio_scores,
    exact_attack_score,
    features_from_codes,
    gate,
    membership_split,
    rank_score_stddev,
    rank_sensitivity_l2,
    run_attacks,
    schema_code_features,
    schema_feature_space,
)
from cleanroom.sample_data import generate, sample_schema

DOMAIN = Domain(tuple(f"x{i}" for i in range(8)), (2, 3, 4, 5, 6, 3, 4, 8))
N = 800  # per group; the null AUC's standard deviation is about 0.0144


def population(n: int, seed: int) -> np.ndarray:
    """Codes with some dependence (x1 follows x0) so density models have structure to learn."""
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, size, n) for size in DOMAIN.shape], axis=1)
    codes[:, 1] = np.where(rng.random(n) < 0.7, codes[:, 0], codes[:, 1])
    return codes


def features(codes: np.ndarray) -> np.ndarray:
    return features_from_codes(codes, DOMAIN, ordinal=("x7",))


def attack_scores(synthetic: np.ndarray, seed: int) -> dict[str, float]:
    data = population(3 * N, seed)
    members, nonmembers, reference = data[:N], data[N : 2 * N], data[2 * N :]
    outcomes = run_attacks(
        features(members),
        features(nonmembers),
        features(synthetic(members)),
        features(reference),
        max_distance=math.sqrt(len(DOMAIN)),
    )
    assert tuple(o.attack for o in outcomes) == ATTACKS
    for outcome in outcomes:  # both additive forms give back the exact local score
        assert combined_rank_score(outcome.statistics) == pytest.approx(outcome.local_score, abs=1e-5)
        assert combined_attack_score(outcome.histogram) == pytest.approx(outcome.local_score, abs=0.01)
    return {o.attack: o.local_score for o in outcomes}


def test_attacks_detect_a_synthesizer_that_copies_members() -> None:
    scores = attack_scores(lambda members: members.copy(), seed=1)
    assert scores["dcr"] > 0.95
    assert scores["density_ratio"] > 0.7
    assert not gate(scores, max_score=0.9).released  # a gate below the measured scores blocks
    assert gate(scores, max_score=1.0).released


def test_attacks_are_blind_to_an_independent_sample() -> None:
    scores = attack_scores(lambda members: population(2 * N, seed=99), seed=2)
    for name, score in scores.items():
        assert 0.5 <= score < 0.56, name  # 4 standard deviations of the null


def test_attacks_detect_a_noisy_copy() -> None:
    """Each member copied with one attribute resampled: no exact matches, but densities still show."""

    def noisy_copy(members: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(5)
        copy = members.copy()
        column = rng.integers(0, len(DOMAIN), len(copy))
        copy[np.arange(len(copy)), column] = rng.integers(0, np.array(DOMAIN.shape)[column])
        return np.concatenate([copy, population(N, seed=6)])

    scores = attack_scores(noisy_copy, seed=3)
    assert scores["dcr"] > 0.65
    assert scores["density_ratio"] > 0.6


def test_attack_vectors_add_up_and_combine_to_the_pooled_score() -> None:
    rng = np.random.default_rng(7)
    members, nonmembers = rng.beta(3, 2, 3000), rng.beta(2, 2, 3000)
    parts = [attack_statistics(members[i::3], nonmembers[i::3]) for i in range(3)]
    pooled = attack_statistics(members, nonmembers)
    np.testing.assert_array_equal(np.sum(parts, axis=0), pooled)
    assert combined_attack_score(pooled) == pytest.approx(exact_attack_score(members, nonmembers), abs=0.002)
    assert exact_attack_score(nonmembers, members) == pytest.approx(exact_attack_score(members, nonmembers))


def test_feature_space_distances() -> None:
    space = FeatureSpace(categorical={"colour": ("red", "blue")}, numerical={"age": (0.0, 100.0)})
    frame = pd.DataFrame({"colour": ["red", "blue", None, 13], "age": [0, 100, np.nan, 50]})
    features = space.transform(frame)
    assert np.linalg.norm(features[0] - features[1]) == pytest.approx(math.sqrt(2.0))
    assert np.linalg.norm(features[2] - features[3]) == pytest.approx(math.sqrt(0.25 + 1.0))
    assert space.max_distance == pytest.approx(math.sqrt(3.0))
    scores = dcr_scores(features[:1], features[:1], space.max_distance)
    assert scores[0] == 1.0


def test_density_ratio_prefers_records_where_synthetic_is_denser_than_reference() -> None:
    synthetic = np.array([[0.0, 0.0]] * 9 + [[1.0, 1.0]])
    reference = np.array([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    scores = density_ratio_scores(np.array([[0.0, 0.0], [1.0, 1.0]]), synthetic, reference)
    assert scores[0] > 0.5 > scores[1]
    with pytest.raises(InvalidInput, match="bandwidth"):
        density_ratio_scores(synthetic, synthetic, reference, bandwidth=0.0)


def test_membership_split_is_a_partition() -> None:
    split = membership_split(1000, 0.2, np.random.default_rng(9))
    together = np.concatenate([split.members, split.nonmembers, split.reference])
    assert sorted(together.tolist()) == list(range(1000))
    assert len(split.nonmembers) == 100 and len(split.reference) == 100
    with pytest.raises(InvalidInput, match="holdout_fraction"):
        membership_split(10, 1.5, np.random.default_rng(0))


def test_gate_blocks_above_and_permits_at_or_below_the_maximum() -> None:
    scores = {"dcr": 0.52, "density_ratio": 0.61}
    blocked = gate(scores, max_score=0.6)
    assert not blocked.released and "density_ratio = 0.610" in blocked.reason and "dcr" not in blocked.reason
    assert gate(scores, max_score=0.61).released
    assert gate(scores, max_score=0.9).released


def test_gate_fails_closed() -> None:
    assert not gate({}, 0.9).released
    unknown = gate({"dcr": 0.5, "density_ratio": float("nan")}, 0.9)
    assert not unknown.released and "density_ratio" in unknown.reason
    with pytest.raises(InvalidInput, match="max_membership_inference_score"):
        gate({"dcr": 0.5}, 0.4)


def test_ordinal_codes_with_missing_level_and_schema_helpers() -> None:
    domain = Domain(("n", "c"), (5, 3))  # n: 4 bins + __missing__ (code 4)
    codes = np.array([[0, 0], [3, 0], [4, 0], [0, 2]])
    feats = features_from_codes(codes, domain, ordinal=("n",), missing_codes={"n": 4})
    assert np.linalg.norm(feats[0] - feats[1]) == pytest.approx(1.0)
    assert np.linalg.norm(feats[0] - feats[2]) == pytest.approx(1.0)  # missing: indicator only
    assert np.linalg.norm(feats[0] - feats[3]) == pytest.approx(1.0)
    assert codes_max_distance(domain, ("n",), {"n": 4}) == pytest.approx(math.sqrt(3.0))

    schema = sample_schema()
    ordinal, missing = schema_code_features(schema)
    numerical = [c.name for c in schema.measured_columns if c.type == "numerical"]
    assert list(ordinal) == numerical and set(missing) <= set(numerical)
    frame = generate(50, seed=1)
    space = schema_feature_space(schema)
    encoded = space.transform(frame)
    assert encoded.shape[0] == 50
    distances = np.linalg.norm(encoded[:, None, :] - encoded[None, :, :], axis=2)
    assert distances.max() <= space.max_distance + 1e-9


def test_rank_vectors_sum_to_the_member_weighted_mean_of_party_aucs() -> None:
    rng = np.random.default_rng(12)
    parties = [(rng.beta(3, 2, n), rng.beta(2, 2, n)) for n in (300, 500, 1200)]
    summed = np.sum([attack_rank_statistics(m, nm) for m, nm in parties], axis=0)
    weighted = sum(len(m) * exact_attack_score(m, nm) for m, nm in parties) / sum(len(m) for m, _ in parties)
    assert combined_rank_score(summed) == pytest.approx(weighted, abs=1e-5)
    sigma = rank_sensitivity_l2() * 5
    noisy = summed + np.round(rng.normal(0, sigma, 2)).astype(np.int64)
    stddev = rank_score_stddev(noisy, sigma)
    assert 0.0 < stddev < 0.01  # sqrt(5) * 5 / 2000 members
    assert combined_rank_score(noisy) == pytest.approx(weighted, abs=4 * stddev)


def test_rank_vector_moves_within_its_sensitivity() -> None:
    rng = np.random.default_rng(13)
    members, nonmembers = rng.random(401), rng.random(401)
    base = attack_rank_statistics(members[:400], nonmembers[:400])
    for changed in (
        attack_rank_statistics(members[1:], nonmembers[1:]),  # one non-member + coupled member
        attack_rank_statistics(np.r_[members[:399], 1.0], nonmembers[:400]),
    ):  # a member swapped
        assert np.linalg.norm(changed - base) <= rank_sensitivity_l2()
    with pytest.raises(InvalidInput, match="equal"):
        attack_rank_statistics(members[:10], nonmembers[:11])
