"""Known-answer and property tests of the secure-aggregation primitives (cleanroom.secagg.math)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from cleanroom.errors import InvalidInput
from cleanroom.secagg import math as sm
from cleanroom.secagg.manifest import session_id

SID_A = session_id("collab", 0, "plan", bytes(32))
SID_B = session_id("collab", 1, "plan", bytes(32))


def test_hkdf_rfc5869_case_1() -> None:
    okm = sm.hkdf_sha256(bytes([0x0B] * 22), bytes(range(0x00, 0x0D)), bytes(range(0xF0, 0xFA)), length=42)
    expected = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    assert okm.hex() == expected


def test_prg_is_the_chacha20_keystream_rfc8439_a1_vector_1() -> None:
    # RFC 8439 A.1 test vector #1: all-zero key, nonce and counter; first 64 keystream bytes.
    block = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    stream = sm.prg_uint64(bytes(32), 8)
    assert stream.tobytes() == block
    assert int(stream[0]) == int.from_bytes(block[:8], "little")


def test_prg_is_deterministic_per_key_and_differs_across_keys() -> None:
    key = bytes(range(32))
    assert np.array_equal(sm.prg_uint64(key, 1000), sm.prg_uint64(key, 1000))
    # a prefix of a longer stream is the shorter stream (one keystream per key)
    assert np.array_equal(sm.prg_uint64(key, 1000)[:10], sm.prg_uint64(key, 10))
    assert not np.array_equal(sm.prg_uint64(key, 100), sm.prg_uint64(bytes(32), 100))
    with pytest.raises(InvalidInput, match="32 bytes"):
        sm.prg_uint64(bytes(16), 4)


def test_int64_encoding_round_trips_and_wraps() -> None:
    values = np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max], dtype=np.int64)
    encoded = sm.encode_int64(values)
    assert encoded.dtype == np.uint64
    assert np.array_equal(sm.decode_uint64(encoded), values)
    assert int(encoded[1]) == 2**64 - 1
    total = sm.encode_int64(np.array([2**62, 2**62], dtype=np.int64)) + sm.encode_int64(
        np.array([-(2**62), 2**62 - 1], dtype=np.int64)
    )
    assert sm.decode_uint64(total).tolist() == [0, 2**63 - 1]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([1.5, 2.0]), "integer dtype"),
        (np.zeros((2, 2), dtype=np.int64), "1-d"),
        (np.array([2**63], dtype=np.uint64), "int64 range"),
    ],
)
def test_int64_encoding_refuses_bad_vectors(bad: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sm.encode_int64(bad)


def test_vector_bytes_must_have_the_agreed_length() -> None:
    vector = sm.encode_int64(np.arange(5))
    assert np.array_equal(sm.vector_from_bytes(sm.vector_to_bytes(vector), 5, what="p"), vector)
    with pytest.raises(InvalidInput, match="expected 48"):
        sm.vector_from_bytes(sm.vector_to_bytes(vector), 6, what="party p01")


def test_encode_fields_is_unambiguous() -> None:
    assert sm.encode_fields("ab", "c") != sm.encode_fields("a", "bc")
    assert sm.encode_fields(b"", "x") != sm.encode_fields("x", b"")
    assert sm.encode_fields(1) != sm.encode_fields(b"\x01")


def test_pair_keys_are_symmetric_and_bound_to_sid_and_purpose() -> None:
    u, v = sm.generate_x25519(), sm.generate_x25519()
    shared_uv = sm.x25519_shared(u, sm.x25519_public_bytes(v), what="v")
    shared_vu = sm.x25519_shared(v, sm.x25519_public_bytes(u), what="u")
    k_uv = sm.pair_key(shared_uv, SID_A, sm.PURPOSE_PAIR_MASK, "alice", "bob")
    k_vu = sm.pair_key(shared_vu, SID_A, sm.PURPOSE_PAIR_MASK, "bob", "alice")
    assert k_uv == k_vu
    assert k_uv != sm.pair_key(shared_uv, SID_B, sm.PURPOSE_PAIR_MASK, "alice", "bob")
    assert k_uv != sm.pair_key(shared_uv, SID_A, sm.PURPOSE_ENCRYPT, "alice", "bob")
    assert k_uv != sm.pair_key(shared_uv, SID_A, sm.PURPOSE_PAIR_MASK, "alice", "carol")
    seed = bytes(32)
    assert sm.self_mask_key(seed, SID_A, "alice") != sm.self_mask_key(seed, SID_B, "alice")
    assert sm.self_mask_key(seed, SID_A, "alice") != sm.self_mask_key(seed, SID_A, "bob")


def test_x25519_rejects_low_order_public_key() -> None:
    with pytest.raises(InvalidInput, match="unusable X25519"):
        sm.x25519_shared(sm.generate_x25519(), bytes(32), what="party p03")


def test_aead_detects_tampering_and_wrong_associated_data() -> None:
    key = bytes(range(32))
    blob = sm.seal(key, b"secret shares", b"ad")
    assert sm.open_sealed(key, blob, b"ad", what="p") == b"secret shares"
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    for bad_blob, ad in ((bytes(flipped), b"ad"), (blob, b"other ad"), (blob[:20], b"ad")):
        with pytest.raises(InvalidInput, match="party p02"):
            sm.open_sealed(key, bad_blob, ad, what="party p02")


# ---------------------------------------------------------------- Shamir


def test_any_t_shares_reconstruct_the_secret() -> None:
    secret = bytes(range(32))
    shares = sm.split_secret(secret, 3, [1, 2, 3, 4, 5])
    for subset in itertools.combinations(shares, 3):
        assert sm.combine_shares(list(subset), 3) == secret
    assert sm.combine_shares(shares, 3) == secret  # all five, consistency-checked
    top = b"\xff" * 32
    assert sm.combine_shares(sm.split_secret(top, 2, [7, 9]), 2) == top


def test_t_minus_one_shares_reveal_nothing_statistically() -> None:
    # With t = 3, the two shares held by parties 1 and 2 must be uniform on GF(p) whatever the secret.
    # A flawed sharing (coefficients of 256 bits, or secret-dependent points) fails these KS tests.
    def share_values(secret: bytes) -> np.ndarray:
        rows = [sm.split_secret(secret, 3, [1, 2, 3])[:2] for _ in range(1500)]
        return np.array([[s.y / sm.SHAMIR_PRIME for s in row] for row in rows])

    low, high = share_values(bytes(32)), share_values(b"\xff" * 32)
    for column in range(2):
        assert stats.kstest(low[:, column], "uniform").pvalue > 1e-4
        assert stats.kstest(high[:, column], "uniform").pvalue > 1e-4
        assert stats.ks_2samp(low[:, column], high[:, column]).pvalue > 1e-4


def _lagrange_at(points: list[tuple[int, int]], x: int) -> int:
    p, total = sm.SHAMIR_PRIME, 0
    for i, (xi, yi) in enumerate(points):
        term = yi
        for j, (xj, _) in enumerate(points):
            if i != j:
                term = term * (x - xj) * pow(xi - xj, -1, p) % p
        total += term
    return total % p


def test_t_minus_one_shares_fit_every_secret() -> None:
    # Information-theoretic view: t-1 shares plus ANY candidate secret c lie on exactly one polynomial of
    # degree t-1, so completing the set with that polynomial's third share reconstructs c: the two shares
    # alone cannot single out the secret.
    held = sm.split_secret(bytes(range(32)), 3, [1, 2, 3])[:2]
    for candidate in (bytes(32), b"\x01" * 32, b"\xfe" * 32):
        points = [(0, int.from_bytes(candidate, "big"))] + [(s.x, s.y) for s in held]
        completed = [*held, sm.Share(3, _lagrange_at(points, 3))]
        assert sm.combine_shares(completed, 3) == candidate


def test_share_serialisation_round_trips() -> None:
    share = sm.split_secret(bytes(32), 2, [513, 2])[0]
    data = sm.encode_share(share)
    assert len(data) == sm.SHARE_BYTES
    assert sm.decode_share(data) == share


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x01" + b"\x00" * 10, "68 bytes"),
        (b"\x00\x00" + b"\x00" * 66, "share x"),
        (b"\x00\x01" + (2**521 - 1).to_bytes(66, "big"), "share y"),
    ],
)
def test_malformed_share_bytes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sm.decode_share(data)


def test_bad_share_sets_are_rejected() -> None:
    shares = sm.split_secret(bytes(range(32)), 3, [1, 2, 3, 4])
    with pytest.raises(InvalidInput, match="3 needed"):
        sm.combine_shares(shares[:2], 3)
    with pytest.raises(InvalidInput, match="repeat"):
        sm.combine_shares([shares[0], shares[0], shares[1]], 3)
    corrupted = [*shares[:3], sm.Share(shares[3].x, (shares[3].y + 1) % sm.SHAMIR_PRIME)]
    with pytest.raises(InvalidInput, match="inconsistent"):
        sm.combine_shares(corrupted, 3)
    random_points = [sm.Share(x, 2**400 + x) for x in (1, 2, 3)]
    with pytest.raises(InvalidInput, match="256-bit"):
        sm.combine_shares(random_points, 3)
