"""Additively homomorphic encryption for the cross-party tables: Paillier, Damgard-Jurik-Nielsen variant.

Key generation and decryption are `phe` (python-paillier, CRT decryption). Encryption follows Damgard, Jurik
and Nielsen (2010, "A generalization of Paillier's public-key system with applications to electronic
voting", section 4.2), the variant Intel's IPCL and SecretFlow's HEU use: the public key is (n, h_s) with
h = -x^2 mod n for a random x and h_s = h^n mod n^2, and

    Enc(m) = (1 + n)^m * h_s^alpha mod n^2,  alpha uniform in [0, 2^(k/2)),  k = 2048 (bits of n),

so (1 + n)^m = 1 + m n costs one multiplication and h_s^alpha is a fixed-base power: `FixedBase` stores
h_s^(d 2^(w i)) for every w-bit digit d and window i, and a power is one multiplication per window. The key
owner, who knows p and q, computes h_s^alpha mod p^2 and mod q^2 and joins them by the CRT (half-size
moduli). Adding plaintexts multiplies ciphertexts mod n^2; `shift` multiplies a plaintext by 2^bits (slot
packing, cleanroom/vertical/layout.py). Ciphertexts travel as 512-byte big-endian integers.

`PlainScheme` implements the same interface without encryption (ciphertext = plaintext): the sensitivity
harness and tests run the party's real aggregation and release code on it; a party node never accepts it.
"""

from __future__ import annotations

import collections
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2

from cleanroom.errors import InvalidInput, ProtocolAbort

KEY_BITS = 2048
RANDOM_BITS = KEY_BITS // 2  # DJN's exponent length, k/2
CIPHERTEXT_BYTES = 2 * KEY_BITS // 8
OWNER_WINDOW = 8  # digits of the owner's fixed-base tables (2 x 128 windows x 256 entries of 256 bytes)
PUBLIC_WINDOW = 8  # digits of the other party's table for its noise encryptions (128 x 256 x 512 bytes)


class FixedBase:
    """base^e mod m for many e < 2^bits: one table lookup and multiplication per `window` bits of e."""

    def __init__(self, base: Any, modulus: Any, bits: int, window: int) -> None:
        self.modulus = gmpy2.mpz(modulus)
        self.window = window
        self.mask = (1 << window) - 1
        self.tables: list[list[Any]] = []
        power = gmpy2.mpz(base) % self.modulus
        for _ in range(math.ceil(bits / window)):
            row = [gmpy2.mpz(1), power]
            for _ in range(2, 1 << window):
                row.append(row[-1] * power % self.modulus)
            self.tables.append(row)
            power = row[-1] * power % self.modulus  # base^(2^(w (i+1)))

    def power(self, exponent: int) -> Any:
        if self.window == 8:  # the digits are the exponent's bytes: no big-integer shifts
            result, modulus = gmpy2.mpz(1), self.modulus
            for row, digit in zip(self.tables, exponent.to_bytes(len(self.tables), "little"), strict=True):
                if digit:
                    result = result * row[digit] % modulus
            return result
        result, modulus, mask, window = gmpy2.mpz(1), self.modulus, self.mask, self.window
        for row in self.tables:
            digit = exponent & mask
            if digit:
                result = result * row[digit] % modulus
            exponent >>= window
        return result


@dataclass(frozen=True)
class PublicKey:
    """(n, h_s): what a party publishes (signed) so the other can encrypt its noise shares under it."""

    n: int
    hs: int

    def __post_init__(self) -> None:
        if self.n.bit_length() != KEY_BITS or self.n % 2 == 0:
            raise InvalidInput(f"Paillier modulus must be an odd {KEY_BITS}-bit number")
        n2 = self.n * self.n
        if not 1 < self.hs < n2 or math.gcd(self.hs, self.n) != 1:
            raise InvalidInput("Paillier h_s must be a unit mod n^2")

    def to_bytes(self) -> bytes:
        return self.n.to_bytes(KEY_BITS // 8, "big") + self.hs.to_bytes(CIPHERTEXT_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        if len(data) != KEY_BITS // 8 + CIPHERTEXT_BYTES:
            raise InvalidInput(f"a Paillier public key is {KEY_BITS // 8 + CIPHERTEXT_BYTES} bytes")
        cut = KEY_BITS // 8
        return cls(int.from_bytes(data[:cut], "big"), int.from_bytes(data[cut:], "big"))


class PaillierPublic:
    """Encryption under someone else's key (the noise shares), homomorphic operations, the wire codec."""

    ciphertext_bytes = CIPHERTEXT_BYTES
    plaintext_bits = KEY_BITS - 1  # packed plaintexts stay below n

    def __init__(self, key: PublicKey) -> None:
        self.key = key
        self.n = gmpy2.mpz(key.n)
        self.n2 = self.n * self.n
        self.one = gmpy2.mpz(1)
        self._table: FixedBase | None = None

    def public_key(self) -> PublicKey:
        return self.key

    def randomizer(self) -> Any:
        if self._table is None:
            self._table = FixedBase(self.key.hs, self.n2, RANDOM_BITS, PUBLIC_WINDOW)
        return self._table.power(secrets.randbits(RANDOM_BITS))

    def encrypt(self, plaintext: int) -> Any:
        if not 0 <= plaintext < self.n:
            raise InvalidInput("a Paillier plaintext must be in [0, n)")
        return (1 + gmpy2.mpz(plaintext) * self.n) * self.randomizer() % self.n2

    def add(self, a: Any, b: Any) -> Any:
        return a * b % self.n2

    def shift(self, ciphertext: Any, bits: int) -> Any:
        """Enc(m) -> Enc(m * 2^bits): `bits` squarings."""
        return gmpy2.powmod(ciphertext, gmpy2.mpz(1) << bits, self.n2)

    def encode(self, ciphertexts: Iterable[Any]) -> bytes:
        return b"".join(int(c).to_bytes(CIPHERTEXT_BYTES, "big") for c in ciphertexts)

    def decode(self, data: bytes, count: int, what: str) -> list[Any]:
        if len(data) != count * CIPHERTEXT_BYTES:
            raise ProtocolAbort(f"{what}: {len(data)} bytes do not hold {count} ciphertexts")
        out = []
        for offset in range(0, len(data), CIPHERTEXT_BYTES):
            value = gmpy2.mpz(int.from_bytes(data[offset : offset + CIPHERTEXT_BYTES], "big"))
            if not 0 < value < self.n2:
                raise ProtocolAbort(f"{what}: a ciphertext is out of range")
            out.append(value)
        return out


class PaillierPrivate(PaillierPublic):
    """A party's own key pair for one job: fast CRT encryption of its own vectors, `phe` decryption."""

    def __init__(self, private_key: Any, hs: int) -> None:
        super().__init__(PublicKey(int(private_key.public_key.n), hs))
        self._private = private_key
        p, q = gmpy2.mpz(private_key.p), gmpy2.mpz(private_key.q)
        self._p2, self._q2 = p * p, q * q
        self._q2_inverse = gmpy2.invert(self._q2, self._p2)
        self._tables = (
            FixedBase(hs % self._p2, self._p2, RANDOM_BITS, OWNER_WINDOW),
            FixedBase(hs % self._q2, self._q2, RANDOM_BITS, OWNER_WINDOW),
        )
        self._pool: collections.deque[Any] = collections.deque()  # prepared randomizers, used once each

    @classmethod
    def generate(cls) -> PaillierPrivate:
        from phe import paillier

        public, private = paillier.generate_paillier_keypair(n_length=KEY_BITS)
        n = gmpy2.mpz(public.n)
        x = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        h = (-x * x) % n
        p, q = gmpy2.mpz(private.p), gmpy2.mpz(private.q)
        hs = _crt_power(h, n, p * p, q * q)
        return cls(private, int(hs))

    def own_randomizer(self) -> Any:
        """h_s^alpha mod n^2 by the CRT (alpha uniform below 2^(k/2)): what masks one ciphertext."""
        alpha = secrets.randbits(RANDOM_BITS)
        rp, rq = self._tables[0].power(alpha), self._tables[1].power(alpha)
        return rq + self._q2 * ((rp - rq) * self._q2_inverse % self._p2)

    def prepare(self, count: int, stop: Any = None) -> None:
        """Offline phase: compute up to `count` randomizers now (memory only; each is used once, then
        dropped), so that encrypting later costs two multiplications. `stop()` true ends it early."""
        for _ in range(count - len(self._pool)):
            if stop is not None and stop():
                return
            self._pool.append(self.own_randomizer())

    def encrypt_own(self, plaintext: int) -> Any:
        """Enc(plaintext) with a prepared randomizer if any is left, else a fresh one (same distribution)."""
        try:
            r = self._pool.popleft()
        except IndexError:
            r = self.own_randomizer()
        return (1 + gmpy2.mpz(plaintext) * self.n) * r % self.n2

    def decrypt(self, ciphertext: Any) -> int:
        return int(self._private.raw_decrypt(int(ciphertext)))


def _crt_power(base: Any, exponent: Any, p2: Any, q2: Any) -> Any:
    rp, rq = gmpy2.powmod(base, exponent, p2), gmpy2.powmod(base, exponent, q2)
    return rq + q2 * ((rp - rq) * gmpy2.invert(q2, p2) % p2)


class PlainScheme:
    """The same interface with no encryption (tests and the sensitivity harness only)."""

    ciphertext_bytes = CIPHERTEXT_BYTES
    plaintext_bits = KEY_BITS - 1
    one = 0

    def public_key(self) -> PlainScheme:
        return self

    def encrypt(self, plaintext: int) -> int:
        return int(plaintext)

    encrypt_own = encrypt
    decrypt = encrypt

    def add(self, a: int, b: int) -> int:
        return a + b

    def shift(self, ciphertext: int, bits: int) -> int:
        return ciphertext << bits

    def encode(self, ciphertexts: Iterable[int]) -> bytes:
        return b"".join(int(c).to_bytes(CIPHERTEXT_BYTES, "big") for c in ciphertexts)

    def decode(self, data: bytes, count: int, what: str) -> list[int]:
        if len(data) != count * CIPHERTEXT_BYTES:
            raise ProtocolAbort(f"{what}: {len(data)} bytes do not hold {count} ciphertexts")
        step = CIPHERTEXT_BYTES
        return [int.from_bytes(data[i : i + step], "big") for i in range(0, len(data), step)]


def sum_ciphertexts(scheme: Any, ciphertexts: Sequence[Any]) -> Any:
    total = scheme.one
    for c in ciphertexts:
        total = scheme.add(total, c)
    return total
