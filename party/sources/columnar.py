"""Counting every requested table in the party process from one stream of packed integer codes.

The engine computes each row's codes once (`sql.encode_query`) and packs them as bit fields into as few
BIGINT words as hold them (code + 1 per column, so REJECT = -1 packs as 0; radix = levels + 1); with the
benchmark's 15 columns that is two words, 26 bytes a row in PostgreSQL's binary COPY format. The party parses
the stream block by block (`BinaryCopyReader`, fixed-width rows, bounded memory), unpacks the columns with
numpy and adds each block to dense count tables (`TableCounter`: one `np.bincount` per covering set, then
the requested sets are summed out of their cover). One scan on the server, no GROUP BY there: PostgreSQL
spent most of the 164 s of the 10M-row benchmark hashing 37 keys per row.

Only code words leave the database connection, and only into the party's own process; what leaves the
party are the tables, exactly as `cleanroom.marginals.count_table` would count them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from cleanroom.errors import DataError

Grouped = tuple[np.ndarray, np.ndarray]
WORD_BITS = 62  # a word's largest packed value stays below 2**62: no sign or overflow trouble in int64
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
BATCH_ROWS = 1 << 20  # rows parsed and counted at a time (~14 MiB of a one-word stream)


@dataclass(frozen=True)
class Packing:
    """Which columns go into which word: `words[i]` lists column positions, least significant first.

    Each column takes a bit field of `bits[j]` bits (enough for its radix), so unpacking is a shift and a
    mask per column, far cheaper in numpy than a division.
    """

    radices: tuple[int, ...]
    words: tuple[tuple[int, ...], ...]

    @property
    def bits(self) -> tuple[int, ...]:
        return tuple(max(1, (radix - 1).bit_length()) for radix in self.radices)

    @classmethod
    def for_shape(cls, shape: Sequence[int]) -> Packing:
        radices = tuple(int(s) + 1 for s in shape)
        widths = tuple(max(1, (radix - 1).bit_length()) for radix in radices)
        if max(widths, default=0) > WORD_BITS:
            raise DataError(f"a column with {max(radices) - 1} levels does not fit a {WORD_BITS}-bit word")
        words: list[tuple[int, ...]] = []
        current: list[int] = []
        used = 0
        for j, width in enumerate(widths):
            if current and used + width > WORD_BITS:
                words.append(tuple(current))
                current, used = [], 0
            current.append(j)
            used += width
        if current:
            words.append(tuple(current))
        return cls(radices, tuple(words))

    def select_list(self) -> str:
        """SQL expressions of the words over the codes relation's columns c0, c1, ... (bit fields)."""
        expressions: list[str] = []
        for word in self.words:
            fields, shift = [], 0
            for j in word:
                code = f"CAST(c{j} + 1 AS BIGINT)"
                fields.append(f"({code} << {shift})" if shift else code)
                shift += self.bits[j]
            expressions.append(f"{' | '.join(fields)} AS w{len(expressions)}")
        return ", ".join(expressions)

    def unpack(self, words: np.ndarray) -> np.ndarray:
        """(rows, words) int64 -> (rows, columns) of code + 1 (int64)."""
        out = np.empty((words.shape[0], len(self.radices)), dtype=np.int64)
        bits = self.bits
        for i, word in enumerate(self.words):
            column_words = words[:, i]
            shift = 0
            for j in word:
                np.bitwise_and(np.right_shift(column_words, shift), (1 << bits[j]) - 1, out=out[:, j])
                shift += bits[j]
            if (np.right_shift(column_words, shift) != 0).any():
                raise DataError("a packed code word holds more than its columns; the stream is corrupt")
        if (out >= np.asarray(self.radices)).any():
            raise DataError("a packed code word is out of range; the stream is corrupt")
        return out


class BinaryCopyReader:
    """Parses PostgreSQL's binary COPY format of rows of `n_words` non-null BIGINT fields."""

    def __init__(self, n_words: int, batch_rows: int = BATCH_ROWS) -> None:
        self.n_words = n_words
        self.batch_rows = batch_rows
        self.row_dtype = np.dtype(
            [("fields", ">i2")]
            + [(f, t) for i in range(n_words) for f, t in ((f"n{i}", ">i4"), (f"w{i}", ">i8"))]
        )
        self.buffer = bytearray()
        self.header_done = False
        self.ended = False
        self.rows = 0

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[np.ndarray]:
        """Add received bytes; yields (rows, n_words) int64 arrays once a batch is complete."""
        self.buffer += data
        if not self.header_done and not self._read_header():
            return
        if self._batch_ready():
            yield from self._rows()

    def finish(self) -> Iterator[np.ndarray]:
        """The rows still buffered; the stream must end with the trailer and nothing after it."""
        if not self.header_done and not self._read_header():
            raise DataError("the binary COPY stream ended inside its header")
        yield from self._rows()
        if self.buffer != b"\xff\xff":
            raise DataError("the binary COPY stream does not end with its trailer")
        self.buffer.clear()
        self.ended = True

    def _read_header(self) -> bool:
        if len(self.buffer) < len(SIGNATURE) + 8:
            return False
        if bytes(self.buffer[: len(SIGNATURE)]) != SIGNATURE:
            raise DataError("not a PostgreSQL binary COPY stream")
        flags, extension = struct.unpack(">iI", self.buffer[len(SIGNATURE) : len(SIGNATURE) + 8])
        if flags != 0:
            raise DataError(f"binary COPY stream with flags {flags:#x} (e.g. OIDs), not plain rows")
        start = len(SIGNATURE) + 8 + extension
        if len(self.buffer) < start:
            return False
        del self.buffer[:start]
        self.header_done = True
        return True

    def _batch_ready(self) -> bool:
        return len(self.buffer) >= self.batch_rows * self.row_dtype.itemsize

    def _rows(self) -> Iterator[np.ndarray]:
        size = self.row_dtype.itemsize
        complete = len(self.buffer) // size
        if not complete:
            return
        block = bytes(self.buffer[: complete * size])  # a copy: the bytearray can shrink while it is parsed
        del self.buffer[: complete * size]
        for start in range(0, complete, self.batch_rows):
            count = min(self.batch_rows, complete - start)
            yield self._words(np.frombuffer(block, dtype=self.row_dtype, count=count, offset=start * size))

    def _words(self, rows: np.ndarray) -> np.ndarray:
        if (rows["fields"] != self.n_words).any() or any(
            (rows[f"n{i}"] != 8).any() for i in range(self.n_words)
        ):
            raise DataError("the binary COPY stream has a row that is not the expected code words")
        self.rows += len(rows)
        return np.stack([rows[f"w{i}"].astype(np.int64) for i in range(self.n_words)], axis=1)


ARRAY_HEADER = struct.Struct(">iiiii")  # ndim, has-nulls flag, element type, size, lower bound
ELEMENT = np.dtype([("length", ">i4"), ("value", ">i8")])
INT8_OID = 20


class BinaryArrayCopyReader(BinaryCopyReader):
    """Parses rows of `n_words` BIGINT[] fields (or NULL for none): one array of each word per COPY row, all
    of the same length, element k of every array belonging to the same data row."""

    def _batch_ready(self) -> bool:
        return True  # a COPY row is one block range: parse each as it arrives

    def _rows(self) -> Iterator[np.ndarray]:
        data = bytes(self.buffer)
        position, parsed = 0, []
        while len(data) - position >= 2:
            (fields,) = struct.unpack_from(">h", data, position)
            if fields == -1:
                break  # the trailer; finish() checks that nothing follows it
            if fields != self.n_words:
                raise DataError("the binary COPY stream has a row that is not the expected code arrays")
            row = self._row(data, position + 2)
            if row is None:
                break  # incomplete: wait for more bytes
            words, position = row
            parsed.append(words)
        del self.buffer[:position]
        if parsed:
            words = np.concatenate(parsed)
            self.rows += len(words)
            yield words

    def _row(self, data: bytes, position: int) -> tuple[np.ndarray, int] | None:
        columns = []
        for _ in range(self.n_words):
            if len(data) - position < 4:
                return None
            (length,) = struct.unpack_from(">i", data, position)
            position += 4
            if length == -1:  # array_agg of no rows
                columns.append(np.zeros(0, dtype=np.int64))
                continue
            if length < 0:
                self._corrupt()
            if len(data) - position < length:
                return None
            columns.append(self._array(data, position, length))
            position += length
        if len({len(c) for c in columns}) != 1:
            raise DataError("the code arrays of one block range differ in length; the stream is corrupt")
        return np.stack(columns, axis=1), position

    def _array(self, data: bytes, position: int, length: int) -> np.ndarray:
        if length == 12:  # an empty array: ndim 0
            return np.zeros(0, dtype=np.int64)
        if length < ARRAY_HEADER.size:
            self._corrupt()
        ndim, has_nulls, element, size, _ = ARRAY_HEADER.unpack_from(data, position)
        if ndim != 1 or has_nulls or element != INT8_OID or length != ARRAY_HEADER.size + size * 12:
            self._corrupt()
        elements = np.frombuffer(data, dtype=ELEMENT, count=size, offset=position + ARRAY_HEADER.size)
        if (elements["length"] != 8).any():
            self._corrupt()
        return elements["value"].astype(np.int64)

    @staticmethod
    def _corrupt() -> NoReturn:
        raise DataError("a code array in the binary COPY stream is malformed; the stream is corrupt")


def cover_sets(
    sets: Sequence[tuple[int, ...]], radices: Sequence[int], budget: int, min_sets: int = 1
) -> list[tuple[int, ...]]:
    """Greedily merge sets into supersets of at most `budget` cells, each covering as many as it can; a
    column joins a cover only if the cover then holds at least `min_sets` more of the sets."""
    remaining = [frozenset(s) for s in dict.fromkeys(sets)]
    covers: list[tuple[int, ...]] = []
    while remaining:
        cover = set(remaining[0])
        while True:
            best, gain = None, min_sets - 1
            for column in range(len(radices)):
                trial = cover | {column}
                if column in cover or math.prod(radices[j] for j in trial) > budget:
                    continue
                newly = sum(1 for s in remaining if s <= trial and not s <= cover)
                if newly > gain:
                    best, gain = column, newly
            if best is None:
                break
            cover.add(best)
        covers.append(tuple(sorted(cover)))
        remaining = [s for s in remaining if not s <= cover]
    return covers


class TableCounter:
    """Dense count tables of covering sets (radix levels + 1 per column, index 0 = REJECT), block by block."""

    def __init__(
        self, sets: Sequence[tuple[int, ...]], radices: Sequence[int], budget: int = 1 << 16
    ) -> None:
        self.sets = list(dict.fromkeys(sets))
        self.radices = tuple(radices)
        self.covers = cover_sets(self.sets, self.radices, budget)
        self.tables = {
            c: np.zeros(math.prod(self.radices[j] for j in c), dtype=np.int64) for c in self.covers
        }

    def add(self, codes_plus_one: np.ndarray) -> None:
        """Count a block of rows given as (rows, columns) code + 1."""
        for cover, table in self.tables.items():
            key = np.zeros(codes_plus_one.shape[0], dtype=np.int64)
            for j in cover:
                key *= self.radices[j]
                key += codes_plus_one[:, j]
            table += np.bincount(key, minlength=table.size)

    @classmethod
    def merge(cls, counters: Sequence[TableCounter]) -> TableCounter:
        """One counter holding the sums of `counters` (same sets and radices)."""
        merged = counters[0]
        for other in counters[1:]:
            if other.covers != merged.covers:
                raise ValueError("counters of different sets cannot be merged")
            for cover, table in other.tables.items():
                merged.tables[cover] += table
        return merged

    def grouped(self) -> dict[tuple[int, ...], Grouped]:
        """Per requested set: the code combinations present (REJECT as -1) and their counts."""
        out: dict[tuple[int, ...], Grouped] = {}
        for group in self.sets:
            cover = next(c for c in self.covers if set(group) <= set(c))
            dense = self.tables[cover].reshape([self.radices[j] for j in cover])
            axes = tuple(i for i, j in enumerate(cover) if j not in group)
            table = dense.sum(axis=axes) if axes else dense
            cells = np.flatnonzero(table)
            codes = (
                np.stack(np.unravel_index(cells, table.shape), axis=1) - 1
                if group
                else np.zeros((cells.size, 0))
            )
            out[group] = (codes.astype(np.int64), table.ravel()[cells].astype(np.int64))
        return out
