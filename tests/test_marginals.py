"""Marginal count tables: layout, exactness, flattening, and additivity across parties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cleanroom.domain import Domain
from cleanroom.encoding import encode
from cleanroom.marginals import count_table, count_tables, flatten_tables, split_vector
from cleanroom.sample_data import generate, sample_schema, split_parties

DOMAIN = Domain(("a", "b", "c"), (3, 4, 2))


def random_codes(n_rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n_rows) for s in DOMAIN.shape], axis=1).astype(np.uint8)


def brute_force(codes: np.ndarray, clique: tuple[str, ...]) -> np.ndarray:
    table = np.zeros(DOMAIN.project(clique).shape, dtype=np.int64)
    for row in codes:
        table[tuple(int(row[DOMAIN.index(a)]) for a in clique)] += 1
    return table


@pytest.mark.parametrize("clique", [("a",), ("c",), ("a", "b"), ("b", "c"), ("a", "b", "c")])
def test_count_table_matches_brute_force(clique: tuple[str, ...]) -> None:
    codes = random_codes(500, seed=1)
    table = count_table(codes, DOMAIN, clique)
    assert table.dtype == np.int64
    assert np.array_equal(table, brute_force(codes, clique))
    assert table.sum() == len(codes)


def test_clique_is_laid_out_in_canonical_order() -> None:
    codes = random_codes(300, seed=2)
    assert np.array_equal(count_table(codes, DOMAIN, ("c", "a")), count_table(codes, DOMAIN, ("a", "c")))
    assert count_table(codes, DOMAIN, ("c", "a")).shape == (3, 2)


def test_empty_codes_give_zero_tables() -> None:
    table = count_table(np.zeros((0, 3), dtype=np.uint8), DOMAIN, ("a", "b"))
    assert table.shape == (3, 4) and not table.any()


def test_codes_outside_the_domain_are_refused() -> None:
    codes = random_codes(10, seed=3)
    codes[4, 0] = 3
    with pytest.raises(ValueError, match="exceed its domain"):
        count_table(codes, DOMAIN, ("a",))


def test_flatten_and_split_are_inverse() -> None:
    codes = random_codes(400, seed=4)
    cliques = [("b",), ("c", "a"), ("a", "b", "c")]
    tables = count_tables(codes, DOMAIN, cliques)
    vector = flatten_tables(tables)
    assert vector.dtype == np.int64 and vector.size == 4 + 6 + 24
    for back, table in zip(split_vector(vector, DOMAIN, cliques), tables, strict=True):
        assert np.array_equal(back, table)
    with pytest.raises(ValueError, match="does not hold"):
        split_vector(vector[:-1], DOMAIN, cliques)


@pytest.mark.parametrize("n_parties", [3, 10])
def test_pooled_counts_equal_sum_of_party_counts(n_parties: int) -> None:
    schema = sample_schema()
    frame = generate(3000, seed=11)
    cliques = [(a,) for a in schema.domain.attrs] + list(itertools.combinations(schema.domain.attrs, 2))[::7]
    pooled = flatten_tables(count_tables(encode(schema, frame).codes, schema.domain, cliques))
    parts = split_parties(frame, n_parties, seed=12, skew=0.5)
    assert sum(len(p) for p in parts) == len(frame)
    summed = sum(
        flatten_tables(count_tables(encode(schema, p, source=f"party{i}").codes, schema.domain, cliques))
        for i, p in enumerate(parts)
    )
    assert isinstance(summed, np.ndarray)
    assert np.array_equal(summed, pooled)
