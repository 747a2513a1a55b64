"""The PostgreSQL source's columnar path: packed code words, the binary COPY parser and the table counter,
checked against direct numpy counts (and the SQL packing against numpy, in DuckDB)."""

from __future__ import annotations

import itertools
import struct

import duckdb
import numpy as np
import pytest

from cleanroom.errors import DataError
from party.sources.columnar import (
    SIGNATURE,
    BinaryArrayCopyReader,
    BinaryCopyReader,
    Packing,
    TableCounter,
)

SHAPE = (11, 26, 13, 31, 9, 21, 17, 4, 5, 7, 10, 14, 18, 22, 42)  # the 10M-row benchmark's domain


def random_codes(rng: np.random.Generator, rows: int, shape: tuple[int, ...]) -> np.ndarray:
    """Codes in [-1, size) per column (-1 = REJECT), as the encode query yields them."""
    return np.stack([rng.integers(-1, size, rows) for size in shape], axis=1)


def pack(packing: Packing, codes: np.ndarray) -> np.ndarray:
    """Bit fields, least significant column first (as Packing.select_list writes them in SQL)."""
    words = np.zeros((codes.shape[0], len(packing.words)), dtype=np.int64)
    for i, word in enumerate(packing.words):
        shift = 0
        for j in word:
            words[:, i] += (codes[:, j] + 1) << shift
            shift += packing.bits[j]
    return words


def copy_stream(words: np.ndarray) -> bytes:
    """PostgreSQL's binary COPY format: signature, flags, extension length, rows, trailer."""
    rows = b"".join(
        struct.pack(">h", words.shape[1]) + b"".join(struct.pack(">iq", 8, int(w)) for w in row)
        for row in words
    )
    return SIGNATURE + struct.pack(">iI", 0, 0) + rows + b"\xff\xff"


def array_stream(blocks: list[np.ndarray]) -> bytes:
    """Binary COPY rows of one BIGINT[] per word (NULL for a block range without rows), as array_agg gives."""
    rows = b""
    for words in blocks:
        rows += struct.pack(">h", 2)
        for column in range(2):
            if len(words) == 0:
                rows += struct.pack(">i", -1)
                continue
            body = struct.pack(">iiiii", 1, 0, 20, len(words), 1)
            body += b"".join(struct.pack(">iq", 8, int(v)) for v in words[:, column])
            rows += struct.pack(">i", len(body)) + body
    return SIGNATURE + struct.pack(">iI", 0, 0) + rows + b"\xff\xff"


def test_array_reader_parses_block_ranges_in_any_fragmentation() -> None:
    packing = Packing.for_shape(SHAPE)
    rng = np.random.default_rng(6)
    blocks = [pack(packing, random_codes(rng, int(n), SHAPE)) for n in (5, 0, 300, 1, 77)]
    stream = array_stream(blocks)
    reader = BinaryArrayCopyReader(2)
    parsed, position = [], 0
    while position < len(stream):
        step = int(rng.integers(1, 500))
        parsed += list(reader.feed(stream[position : position + step]))
        position += step
    parsed += list(reader.finish())
    np.testing.assert_array_equal(np.concatenate(parsed), np.concatenate(blocks))
    assert reader.rows == 383 and reader.ended


def test_array_reader_refuses_malformed_arrays() -> None:
    block = pack(Packing.for_shape(SHAPE), random_codes(np.random.default_rng(7), 4, SHAPE))
    stream = array_stream([block])
    head = len(SIGNATURE) + 8 + 2 + 4  # up to the first array's header
    for mangled in (
        stream[:head] + struct.pack(">i", 2) + stream[head + 4 :],  # two dimensions
        stream[: head + 8] + struct.pack(">i", 23) + stream[head + 12 :],  # int4 elements
        stream[: head + 4] + struct.pack(">i", 1) + stream[head + 8 :],  # has nulls
    ):
        with pytest.raises(DataError, match="malformed|corrupt"):
            reader = BinaryArrayCopyReader(2)
            list(reader.feed(mangled))
            list(reader.finish())


@pytest.mark.parametrize("shape", [SHAPE, (2,) * 70, (3000, 5000, 700, 2)])
def test_packing_round_trips(shape: tuple[int, ...]) -> None:
    packing = Packing.for_shape(shape)
    assert sorted(j for word in packing.words for j in word) == list(range(len(shape)))
    assert all(sum(packing.bits[j] for j in w) <= 62 for w in packing.words)
    assert all(2 ** packing.bits[j] >= packing.radices[j] for j in range(len(shape)))
    codes = random_codes(np.random.default_rng(1), 5000, shape)
    np.testing.assert_array_equal(packing.unpack(pack(packing, codes)), codes + 1)
    assert len(Packing.for_shape(SHAPE).words) == 2  # 15 columns, 65 bits: two BIGINTs a row


def test_sql_packing_equals_numpy_packing() -> None:
    packing = Packing.for_shape(SHAPE + (3000, 5000))  # two words
    codes = random_codes(np.random.default_rng(2), 2000, SHAPE + (3000, 5000))
    with duckdb.connect() as conn:
        conn.register("codes", {f"c{j}": codes[:, j].astype(np.int16) for j in range(codes.shape[1])})
        words = np.asarray(
            conn.execute(f"SELECT {packing.select_list()} FROM codes").fetchall(), dtype=np.int64
        )
    np.testing.assert_array_equal(words, pack(packing, codes))


def test_reader_parses_any_fragmentation() -> None:
    packing = Packing.for_shape(SHAPE)
    words = pack(packing, random_codes(np.random.default_rng(3), 3000, SHAPE))
    stream = copy_stream(words)
    rng = np.random.default_rng(4)
    reader = BinaryCopyReader(len(packing.words), batch_rows=700)
    parsed, position = [], 0
    while position < len(stream):
        step = int(rng.integers(1, 200))
        parsed += list(reader.feed(stream[position : position + step]))
        position += step
    parsed += list(reader.finish())
    np.testing.assert_array_equal(np.concatenate(parsed), words)
    assert reader.rows == 3000 and reader.ended


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: b"NOTCOPY" + s[7:], "not a PostgreSQL binary COPY"),
        (lambda s: s[:-2], "trailer"),
        (lambda s: s[:-9] + s[-2:], "trailer|expected code words"),
        (lambda s: s[:19] + struct.pack(">h", 2) + s[21:], "expected code words"),
        (lambda s: s[:11] + struct.pack(">i", 1 << 16) + s[15:], "flags"),
    ],
)
def test_reader_refuses_corrupt_streams(mangle: object, message: str) -> None:
    stream = copy_stream(np.arange(10, dtype=np.int64).reshape(-1, 1))
    reader = BinaryCopyReader(1)
    with pytest.raises(DataError, match=message):
        list(reader.feed(mangle(stream)))  # type: ignore[operator]
        list(reader.finish())


def test_unpack_refuses_words_out_of_range() -> None:
    packing = Packing.for_shape((3, 4))  # radices 4 and 5: fields of 2 and 3 bits
    with pytest.raises(DataError, match="corrupt"):
        packing.unpack(np.array([[1 << 5]], dtype=np.int64))  # a bit beyond the last field
    with pytest.raises(DataError, match="corrupt"):
        packing.unpack(np.array([[4 | (5 << 2)]], dtype=np.int64))  # field 1 (3 bits) holds 5 > 4
    with pytest.raises(DataError, match="corrupt"):
        packing.unpack(np.array([[-1]], dtype=np.int64))


def test_counter_equals_direct_counts_for_every_pair_and_single() -> None:
    shape = SHAPE[:8]
    codes = random_codes(np.random.default_rng(5), 20000, shape)
    sets = [(j,) for j in range(len(shape))] + list(itertools.combinations(range(len(shape)), 2))
    counter = TableCounter(sets, [s + 1 for s in shape], budget=2000)
    assert len(counter.covers) < len(sets)
    for start in range(0, len(codes), 6000):  # blocks
        counter.add(codes[start : start + 6000] + 1)
    grouped = counter.grouped()
    for group in sets:
        unique, counts = np.unique(codes[:, list(group)], axis=0, return_counts=True)
        got_codes, got_counts = grouped[group]
        order = np.lexsort(got_codes.T[::-1])
        np.testing.assert_array_equal(got_codes[order], unique)
        np.testing.assert_array_equal(got_counts[order], counts)
