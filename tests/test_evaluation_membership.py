"""Membership inference: per-record split, exact capped DCR distances, the histogram statistic, the gate."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.evaluation.membership import (
    DCR_MAX_DISTANCE,
    DCR_SENSITIVITY_L2,
    capped_hamming_distances,
    combined_dcr_score,
    dcr_score_stddev,
    dcr_statistics,
    gate,
    membership_split,
    occurrence_numbers,
    record_units,
    run_dcr_attack,
)

DOMAIN = Domain(tuple(f"x{i}" for i in range(8)), (2, 3, 4, 5, 6, 3, 4, 8))
N = 800  # per group; the null AUC's standard deviation is about 0.0144


def population(n: int, seed: int) -> np.ndarray:
    """Codes with some dependence (x1 follows x0)."""
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, size, n) for size in DOMAIN.shape], axis=1)
    codes[:, 1] = np.where(rng.random(n) < 0.7, codes[:, 0], codes[:, 1])
    return codes


def brute_force(query: np.ndarray, synthetic: np.ndarray, cap: int = DCR_MAX_DISTANCE) -> np.ndarray:
    if len(synthetic) == 0:
        return np.full(len(query), cap)
    return np.array([min(int((synthetic != q).sum(axis=1).min()), cap) for q in query], dtype=np.int64)


def attack_score(synthetic: np.ndarray, members: np.ndarray, nonmembers: np.ndarray) -> float:
    return run_dcr_attack(members, nonmembers, synthetic, DOMAIN.shape).local_score


# ---- the split ------------------------------------------------------------------------------------------


def nonmember_rows(codes: np.ndarray) -> Counter[tuple[int, ...]]:
    split = membership_split(codes, b"secret", 0.2)
    assert len(split.members) + len(split.nonmembers) == len(codes)
    return Counter(tuple(int(v) for v in row) for row in codes[split.nonmembers])


def test_split_is_per_record_adding_or_removing_a_row_moves_no_other() -> None:
    codes = population(2000, seed=1)
    codes[1000:1100] = codes[0]  # 101 identical rows
    base = nonmember_rows(codes)
    assert 0.17 < sum(base.values()) / 2000 < 0.23
    assert 5 <= base[tuple(int(v) for v in codes[0])] <= 40  # copies get independent sides
    rng = np.random.default_rng(2)
    for extra in (population(1, seed=3)[0], codes[0], codes[5]):
        grown = np.concatenate([codes, extra[None, :]])[rng.permutation(2001)]  # row order is no part of it
        changed = nonmember_rows(grown)
        difference = (changed - base) + (base - changed)
        assert sum(difference.values()) <= 1 and set(difference) <= {tuple(int(v) for v in extra)}
    for drop in (0, 1000, 1999):
        changed = nonmember_rows(np.delete(codes, drop, axis=0))
        difference = (changed - base) + (base - changed)
        assert sum(difference.values()) <= 1 and set(difference) <= {tuple(int(v) for v in codes[drop])}


def test_split_depends_on_the_secret_not_on_row_order_and_handles_any_size() -> None:
    codes = np.concatenate([population(500, seed=4), population(20, seed=4)])  # 20 duplicated rows
    first = record_units(codes, b"a")
    order = np.random.default_rng(5).permutation(len(codes))
    shuffled = record_units(codes[order], b"a")
    assert np.array_equal(np.sort(shuffled), np.sort(first))  # copies of a row may trade their numbers
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    once = (counts[inverse.ravel()] == 1)[order]  # a row without copies keeps its own number
    assert once.sum() >= 400 and np.array_equal(shuffled[once], first[order][once])
    assert not np.array_equal(record_units(codes, b"b"), first)
    assert ((first >= 0) & (first < 1)).all()
    for n in (0, 1, 2):
        split = membership_split(codes[:n], b"a", 0.2)
        assert len(split.members) + len(split.nonmembers) == n
    assert membership_split(np.zeros((3, 0), dtype=np.int64), b"a", 0.2).members.size <= 3
    assert sorted(occurrence_numbers(np.array([[1, 2], [0, 0], [1, 2], [1, 2]])).tolist()) == [0, 0, 1, 2]
    with pytest.raises(InvalidInput, match="holdout_fraction"):
        membership_split(codes, b"a", 1.5)


# ---- distances and the attack ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_capped_distances_equal_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    synthetic = population(int(rng.integers(1, 300)), seed=100 + seed)
    near = synthetic[rng.integers(0, len(synthetic), 90)].copy()  # copies with 0 to 4 attributes changed
    for i, k in enumerate(rng.integers(0, 5, 90)):
        columns = rng.choice(len(DOMAIN), k, replace=False)
        near[i, columns] = rng.integers(0, np.array(DOMAIN.shape)[columns])
    query = np.concatenate([population(200, seed=200 + seed), near])
    for cap in (1, 2, 3, 4):
        found = capped_hamming_distances(query, synthetic, DOMAIN.shape, cap)
        assert np.array_equal(found, brute_force(query, synthetic, cap)), cap


def test_capped_distances_edge_cases() -> None:
    synthetic = population(10, seed=1)
    assert capped_hamming_distances(synthetic[:0], synthetic, DOMAIN.shape).shape == (0,)
    assert capped_hamming_distances(synthetic, synthetic[:0], DOMAIN.shape).tolist() == [3] * 10
    assert capped_hamming_distances(synthetic, synthetic, DOMAIN.shape).tolist() == [0] * 10
    two = Domain(("a", "b"), (3, 3))
    far = capped_hamming_distances(np.array([[0, 0]]), np.array([[1, 1]]), two.shape, cap=3)
    assert far.tolist() == [2]  # two attributes can differ in at most two places
    with pytest.raises(InvalidInput, match="outside the domain"):
        capped_hamming_distances(np.array([[0, 3]]), np.array([[1, 1]]), two.shape)


def test_attack_detects_a_synthesizer_that_copies_members_and_not_an_independent_sample() -> None:
    data = population(2 * N, seed=1)
    members, nonmembers = data[:N], data[N:]
    copied = attack_score(members.copy(), members, nonmembers)
    assert copied > 0.95
    assert not gate({"dcr": copied}, max_score=0.9).released
    independent = attack_score(population(2 * N, seed=99), members, nonmembers)
    assert 0.5 <= independent < 0.56  # 4 standard deviations of the null

    rng = np.random.default_rng(5)
    noisy = members.copy()  # each member copied with one attribute resampled: no exact matches
    column = rng.integers(0, len(DOMAIN), N)
    noisy[np.arange(N), column] = rng.integers(0, np.array(DOMAIN.shape)[column])
    assert attack_score(np.concatenate([noisy, population(N, seed=6)]), members, nonmembers) > 0.65


def test_dcr_vectors_add_up_and_move_one_cell_per_record() -> None:
    rng = np.random.default_rng(7)
    members, nonmembers = rng.integers(0, 6, 3000), rng.integers(1, 6, 3000)
    parts = [dcr_statistics(members[i::3], nonmembers[i::3]) for i in range(3)]
    pooled = dcr_statistics(members, nonmembers)
    np.testing.assert_array_equal(np.sum(parts, axis=0), pooled)
    assert pooled.sum() == 6000 and pooled.size == 2 * (DCR_MAX_DISTANCE + 1)
    for added in (dcr_statistics(members[1:], nonmembers), dcr_statistics(members, nonmembers[:-1])):
        assert np.linalg.norm(pooled - added) == DCR_SENSITIVITY_L2


def test_combined_score_matches_the_exact_auc_and_its_noise() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    members, nonmembers = rng.integers(0, 4, 5000), rng.integers(1, 4, 5000)
    vector = dcr_statistics(members, nonmembers)
    labels = np.r_[np.ones(5000), np.zeros(5000)]
    exact = roc_auc_score(labels, -np.r_[members, nonmembers].astype(float))
    assert combined_dcr_score(vector) == pytest.approx(max(exact, 1 - exact), abs=1e-12)
    assert combined_dcr_score(dcr_statistics(nonmembers, members)) == pytest.approx(
        combined_dcr_score(vector)
    )
    sigma = 30.0
    stddev = dcr_score_stddev(vector, sigma)
    assert 0.0 < stddev < 0.01
    draws = [combined_dcr_score(vector + rng.normal(0, sigma, vector.size)) for _ in range(300)]
    assert np.std(draws) == pytest.approx(stddev, rel=0.25)
    assert math.isnan(combined_dcr_score(dcr_statistics([], [1, 2])))
    with pytest.raises(InvalidInput, match="length"):
        combined_dcr_score(vector[:-1])


# ---- the gate ----------------------------------------------------------------------------------------------


def test_gate_blocks_above_and_permits_at_or_below_the_maximum() -> None:
    scores = {"dcr": 0.61}
    blocked = gate(scores, max_score=0.6)
    assert not blocked.released and "dcr = 0.610" in blocked.reason
    assert gate(scores, max_score=0.61).released
    assert gate(scores, max_score=0.9).released


def test_gate_fails_closed() -> None:
    assert not gate({}, 0.9).released
    unknown = gate({"dcr": float("nan")}, 0.9)
    assert not unknown.released and "dcr" in unknown.reason
    assert gate({"dcr": float("nan")}, 1.0).released  # a gate of 1 is no gate
    with pytest.raises(InvalidInput, match="max_membership_inference_score"):
        gate({"dcr": 0.5}, 0.4)
