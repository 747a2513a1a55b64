"""Protobuf <-> value-object conversion: round trips, exact fractions, packed vectors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cleanroom.errors import InvalidInput
from transport import serde, wire


def test_round_spec_round_trip_keeps_exact_fraction() -> None:
    spec = wire.RoundRequest("job", "job/0", 0, (("age",), ("age", "sex")), Fraction(1000, 3))
    back = serde.round_from_pb(serde.round_to_pb(spec))
    assert back == spec
    assert back.sigma_party2 == Fraction(1000, 3)


def test_zero_denominator_is_refused() -> None:
    message = serde.round_to_pb(wire.RoundRequest("j", "r", 1, (("x",),), Fraction(5)))
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


def test_results_round_trip() -> None:
    files = [wire.ResultFile("model.onnx", 10, "ab" * 32)]
    assert serde.result_header_from_pb(serde.result_header_to_pb("j", files)) == ("j", files)
    assert serde.chunk_from_pb(serde.chunk_to_pb("model.onnx", 4, b"xyz")) == ("model.onnx", 4, b"xyz")


def test_result_file_names_are_an_allowlist() -> None:
    with pytest.raises(InvalidInput, match="must be one of"):
        wire.ResultFile("../../etc/passwd", 1, "00")


def test_chunk_before_header_is_refused() -> None:
    with pytest.raises(InvalidInput, match="header"):
        serde.result_header_from_pb(serde.chunk_to_pb("report.json", 0, b"{}"))


def test_every_secure_aggregation_message_round_trips() -> None:
    sa = pytest.importorskip("cleanroom.secagg.messages")
    sid = bytes(range(32))
    advert = sa.AdvertiseKeys(sid, "AdvertiseKeys", "p1", b"e" * 32, b"m" * 32, b"s" * 64)
    shares = (sa.EncryptedShares("p1", "p2", b"c1"), sa.EncryptedShares("p3", "p2", b"c2"))
    signature = sa.ConsistencySignature(sid, "ConsistencyCheck", "p1", b"g" * 64)
    messages = [
        sa.AdvertiseKeysRequest(sid, "AdvertiseKeys", "coordinator"),
        advert,
        sa.ShareKeysRequest(sid, "ShareKeys", "coordinator", (advert,)),
        sa.ShareKeys(sid, "ShareKeys", "p1", shares),
        sa.MaskedInputRequest(sid, "MaskedInput", "coordinator", shares),
        sa.MaskedInput(sid, "MaskedInput", "p2", serde.pack_vector(np.array([1, -1], dtype=np.int64))),
        sa.ConsistencyCheckRequest(sid, "ConsistencyCheck", "coordinator", ("p1", "p2")),
        signature,
        sa.UnmaskRequest(sid, "Unmask", "coordinator", ("p1", "p2"), (signature,), ("p1",), ("p3",)),
        sa.UnmaskResponse(
            sid, "Unmask", "p1", (sa.RevealedShare("p1", b"x"),), (sa.RevealedShare("p3", b"y"),)
        ),
    ]
    for message in messages:
        encoded = serde.stage_to_pb(message)
        assert encoded.header.sender == message.sender
        decoded = serde.stage_from_pb(type(encoded).FromString(encoded.SerializeToString()))
        assert decoded == message, type(message).__name__


def test_advertise_request_carries_the_round_spec() -> None:
    sa = pytest.importorskip("cleanroom.secagg.messages")
    spec = wire.RoundRequest("j", "j/2", 2, (("a", "b"),), Fraction(9, 2))
    request = sa.AdvertiseKeysRequest(bytes(32), "AdvertiseKeys", "coordinator")
    assert serde.advertise_request_from_pb(serde.advertise_request_to_pb(spec, request)) == (spec, request)
