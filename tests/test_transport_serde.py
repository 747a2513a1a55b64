"""Protobuf <-> value-object conversion: round trips, exact fractions, packed vectors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cleanroom.errors import InvalidInput
from transport import serde, wire


def test_round_spec_round_trip_keeps_exact_fraction() -> None:
    spec = wire.RoundRequest(
        "job", "job/0", 0, b"\x01" * 32, (("age",), ("age", "sex")), Fraction(1000, 3), ("a", "b", "c"), 2
    )
    back = serde.round_from_pb(serde.round_to_pb(spec))
    assert back == spec
    assert back.sigma_party2 == Fraction(1000, 3)


def test_zero_denominator_is_refused() -> None:
    message = serde.round_to_pb(wire.RoundRequest("j", "r", 1, b"s", (("x",),), Fraction(5), ("a", "b"), 2))
    message.sigma_party2_denominator = 0
    with pytest.raises(InvalidInput, match="denominator"):
        serde.round_from_pb(message)


def test_vector_packs_as_little_endian_uint64_with_wraparound() -> None:
    vector = np.array([0, 1, -1, 2**63 - 1, -(2**63)], dtype=np.int64)
    data = serde.pack_vector(vector)
    assert len(data) == 8 * len(vector)
    assert data[8:16] == (1).to_bytes(8, "little")
    assert data[16:24] == b"\xff" * 8
    back = serde.unpack_vector(data, len(vector), "test")
    assert back.dtype == np.uint64
    assert np.array_equal(back.view(np.int64), vector)


def test_vector_of_the_wrong_length_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="3 uint64 cells"):
        serde.unpack_vector(b"\x00" * 16, 3, "party x")


def test_unmask_and_results_round_trip() -> None:
    shares = wire.UnmaskShares((wire.RevealedShare("a", b"1"),), (wire.RevealedShare("b", b"2"),))
    assert serde.unmask_from_pb(serde.unmask_to_pb(shares)) == shares
    files = [wire.ResultFile("model.skops", 10, "ab" * 32)]
    assert serde.result_header_from_pb(serde.result_header_to_pb("j", files)) == ("j", files)
    assert serde.chunk_from_pb(serde.chunk_to_pb("model.skops", 4, b"xyz")) == ("model.skops", 4, b"xyz")


def test_result_file_names_are_an_allowlist() -> None:
    with pytest.raises(InvalidInput, match="must be one of"):
        wire.ResultFile("../../etc/passwd", 1, "00")


def test_chunk_before_header_is_refused() -> None:
    with pytest.raises(InvalidInput, match="header"):
        serde.result_header_from_pb(serde.chunk_to_pb("report.json", 0, b"{}"))
