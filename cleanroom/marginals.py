"""Marginal count tables over cliques of the domain, and their flat concatenation for transport.

A table for a clique is laid out with the clique's attributes in canonical (domain) order, C-order; cell
(i, j, ...) counts the rows whose codes are (i, j, ...). Each table is one `np.bincount` over raveled indices,
so counting is linear in rows with no per-row Python. Counts are int64 so that a flattened vector of tables
from several parties sums exactly (and stays exact under int64 secure-aggregation arithmetic).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cleanroom.domain import Clique, Domain


def _raveled_index(codes: np.ndarray, domain: Domain, clique: Clique) -> np.ndarray:
    """Row-wise C-order cell index of `clique` (already canonical), built with cumulative strides."""
    index = np.zeros(codes.shape[0], dtype=np.int64)
    for attr in clique:
        column = codes[:, domain.index(attr)]
        index *= domain.size(attr)
        index += column
    return index


def count_table(codes: np.ndarray, domain: Domain, clique: Sequence[str]) -> np.ndarray:
    """Counts of `clique` (in canonical order) over the rows of `codes` (n_rows x len(domain))."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(domain):
        raise ValueError(f"codes shape {codes.shape} does not fit a domain of {len(domain)} attributes")
    canonical = domain.canonical(tuple(clique))
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"clique {tuple(clique)} repeats an attribute")
    shape = domain.project(canonical).shape
    cells = int(np.prod(shape, dtype=np.int64))
    if len(canonical) == 1:
        flat = np.bincount(codes[:, domain.index(canonical[0])], minlength=cells)
    else:
        flat = np.bincount(_raveled_index(codes, domain, canonical), minlength=cells)
    if flat.size != cells:
        raise ValueError(f"codes of clique {canonical} exceed its domain {shape}")
    return flat.astype(np.int64, copy=False).reshape(shape)


def count_tables(codes: np.ndarray, domain: Domain, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
    return [count_table(codes, domain, clique) for clique in cliques]


def flatten_tables(tables: Sequence[np.ndarray]) -> np.ndarray:
    """One int64 vector: the C-order ravel of each table, concatenated in the given order."""
    if not tables:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(t).astype(np.int64, copy=False).ravel() for t in tables])


def split_vector(vector: np.ndarray, domain: Domain, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Inverse of `flatten_tables` for tables of `cliques` (each in canonical order)."""
    vector = np.asarray(vector)
    shapes = [domain.project(domain.canonical(tuple(c))).shape for c in cliques]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    if vector.ndim != 1 or vector.size != sum(sizes):
        raise ValueError(
            f"vector of shape {vector.shape} does not hold tables of {sum(sizes)} cells in total"
        )
    offsets = np.cumsum([0, *sizes])
    return [
        vector[start:stop].reshape(shape)
        for start, stop, shape in zip(offsets[:-1], offsets[1:], shapes, strict=True)
    ]
