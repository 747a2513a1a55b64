"""Exact discrete Gaussian noise N_Z(0, sigma^2) from the operating system's CSPRNG.

Algorithm (Canonne, Kamath, Steinke 2020, arXiv 2004.00010): draw a discrete Laplace proposal Y and keep it
with probability exp(-(|Y| - mu)^2 / (2 sigma^2)); every Bernoulli(exp(-gamma)) is drawn with the series
method of that paper, and every Bernoulli(p) for rational p = num/den compares an exact uniform integer below
`den` with `num`. No floating-point number is ever computed on the noise path.

Two choices differ from the paper's presentation, both keeping the output exactly N_Z(0, sigma^2):
* The proposal is a discrete Laplace with rational scale sigma^2/mu for the integer mu = floor(sigma) (at
  least 1). The rejection step is valid for any positive scale; this one makes the acceptance exponent
  gamma = (|Y| - mu)^2 * b / (2a) for sigma^2 = a/b, whose numerator and denominator stay small enough for
  int64 even at sigma = 10^5 (the paper's integer scale floor(sigma)+1 would need ~2^67 at that sigma).
* Everything is vectorised with numpy uint64/int64: each round makes one attempt for every missing cell and
  keeps the accepted ones. The sizes of all intermediate integers are bounded in advance (`_Params.vcap`); an
  attempt whose geometric part runs past that bound (probability < e^-8, in practice never) is finished
  with Python integers, and a sigma too large for any int64 bound uses Python integers throughout.

Randomness: 8- to 64-bit words (the narrowest that fits) from `os.urandom`; uniform integers below a bound
by rejecting the bottom partial range (no modulo bias). Seeds do not exist; the private `_Rng` accepts
another byte source only so tests can be reproducible.

Why not OpenDP (PyPI `opendp`, which has a vetted sampler): ours is ~300 lines without a compiled
dependency, reads os.urandom directly, meets the speed target (a 10^6-cell vector in under a second,
`scripts/bench_noise.py`) and its integer-only path is tested here; OpenDP would add a large native
dependency for this one function. (We did not benchmark OpenDP.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt
from typing import Any

import numpy as np
import numpy.typing as npt

from cleanroom.errors import InvalidInput

Int64Array = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]
UIntArray = npt.NDArray[Any]  # uint8..uint64 depending on the bound
RandomBytes = Callable[[int], bytes]

MIN_PARTY_SIGMA2 = Fraction(4)
MAX_NOISE_SHARES = 4  # draws a party's share may be split into (`cleanroom.accounting.NoiseLayout`)
MAX_SIGMA2 = Fraction(2**80)
_INT64_SAFE = 2**62
_MIN_VCAP = 8
_WORD_TYPES = ((2**8, np.uint8), (2**16, np.uint16), (2**32, np.uint32), (2**64, np.uint64))


class _Rng:
    """Exact uniform integers and rational/exponential Bernoulli trials from a byte source."""

    def __init__(self, random_bytes: RandomBytes | None = None) -> None:
        self._random_bytes = os.urandom if random_bytes is None else random_bytes

    def words(self, dtype: type[np.unsignedinteger[Any]], n: int) -> UIntArray:
        return np.frombuffer(self._random_bytes(np.dtype(dtype).itemsize * n), dtype=dtype)

    def below(self, bound: int | UIntArray, n: int) -> UIntArray:
        """n uniform integers in [0, bound) (bound >= 1, a constant or one per element), by rejection.

        Uses the narrowest word type holding every bound, so small bounds cost few random bytes.
        """
        top = bound if isinstance(bound, int) else (int(bound.max()) if bound.size else 1)
        dtype = next(t for limit, t in _WORD_TYPES if top < limit)
        b: UIntArray = np.asarray(bound).astype(dtype)
        # Words below 2^w mod b are rejected so the kept range is a whole multiple of b (no modulo bias).
        reject_below: UIntArray = (np.iinfo(dtype).max - b + dtype(1)) % b
        u = self.words(dtype, n)
        out: UIntArray = u % b
        bad = np.flatnonzero(u < reject_below)
        while bad.size:
            bb, rr = (b, reject_below) if b.ndim == 0 else (b[bad], reject_below[bad])
            u = self.words(dtype, bad.size)
            out[bad] = u % bb
            bad = bad[u < rr]
        return out

    def bernoulli(self, num: UIntArray, den: int) -> BoolArray:
        """Bernoulli(num/den) per element, num <= den."""
        return np.asarray(self.below(den, num.size) < num, dtype=bool)

    def one_in(self, k: UIntArray) -> BoolArray:
        """Bernoulli(1/k) per element."""
        return np.asarray(self.below(k, k.size) == 0, dtype=bool)

    def _series_parity(
        self, first_hit: BoolArray, k: U64Array, step: Callable[[Int64Array], BoolArray]
    ) -> BoolArray:
        """Shared loop of CKS Alg. 1: increase k while Bernoulli(gamma/k) succeeds; success iff k ends odd."""
        active = np.flatnonzero(first_hit)
        k[active] += np.uint64(1)
        while active.size:
            active = active[step(active)]
            k[active] += np.uint64(1)
        return np.asarray(k % np.uint64(2) == np.uint64(1), dtype=bool)

    def bernoulli_exp_fraction(self, num: UIntArray, den: int) -> BoolArray:
        """Bernoulli(exp(-num/den)) per element for 0 <= num <= den."""
        k = np.ones(num.shape, dtype=np.uint64)

        def step(active: Int64Array) -> BoolArray:
            hit = self.bernoulli(num[active], den)  # Bernoulli(gamma/k) = Bernoulli(gamma) and Bernoulli(1/k)
            hit[hit] = self.one_in(k[active[hit]])
            return hit

        return self._series_parity(self.bernoulli(num, den), k, step)

    def bernoulli_exp_minus_one(self, n: int) -> BoolArray:
        k = np.ones(n, dtype=np.uint64)
        return self._series_parity(np.ones(n, dtype=bool), k, lambda active: self.one_in(k[active]))

    def bernoulli_exp(self, num: U64Array, den: int) -> BoolArray:
        """Bernoulli(exp(-num/den)) for any num >= 0: floor(num/den) trials of exp(-1), then the rest."""
        whole, rest = num // np.uint64(den), num % np.uint64(den)
        alive = self.bernoulli_exp_fraction(rest, den)
        todo = np.flatnonzero(alive & (whole > 0))
        while todo.size:
            ok = self.bernoulli_exp_minus_one(todo.size)
            alive[todo[~ok]] = False
            whole[todo] -= np.uint64(1)
            todo = todo[ok & (whole[todo] > 0)]
        return alive

    # Scalar versions with Python integers (huge sigma, rare long geometric runs).
    def randbelow(self, bound: int) -> int:
        nbytes = (bound.bit_length() + 7) // 8 + 1
        limit = (256**nbytes // bound) * bound
        while True:
            u = int.from_bytes(self._random_bytes(nbytes), "little")
            if u < limit:
                return u % bound

    def scalar_bernoulli_exp(self, num: int, den: int) -> bool:
        for _ in range(num // den):
            if not self.scalar_bernoulli_exp_fraction(1, 1):
                return False
        return self.scalar_bernoulli_exp_fraction(num % den, den)

    def scalar_bernoulli_exp_fraction(self, num: int, den: int) -> bool:
        k = 1
        while self.randbelow(den * k) < num:
            k += 1
        return k % 2 == 1


@dataclass(frozen=True)
class _Params:
    """sigma^2 = a/b; proposal discrete Laplace of scale t/s = a/(b*mu) in lowest terms (small t means
    fewer random bytes); acceptance exponent (|Y| - mu)^2 * b / (2a)."""

    a: int
    b: int
    mu: int
    t: int
    s: int

    @classmethod
    def of(cls, sigma2: Fraction) -> _Params:
        a, b = sigma2.numerator, sigma2.denominator
        mu = max(1, isqrt(a // b))
        scale = Fraction(a, b * mu)
        return cls(a, b, mu, scale.numerator, scale.denominator)

    def acceptance_num(self, y_abs: int) -> int:
        return (y_abs - self.mu) ** 2 * self.b

    def vcap(self) -> int:
        """Largest geometric count V (<= 64) for which every intermediate value fits below 2^62, or 0."""
        if 2 * self.a >= _INT64_SAFE:
            return 0
        for vcap in range(64, _MIN_VCAP - 1, -1):
            x_max = self.t * (vcap + 1)
            y_max = x_max // self.s
            largest = max(x_max, self.acceptance_num(y_max), self.mu**2 * self.b)
            if largest < _INT64_SAFE:
                return vcap
        return 0


def _check_sigma2(sigma2: object, what: str = "sigma2") -> Fraction:
    if isinstance(sigma2, bool) or not isinstance(sigma2, Fraction | int):
        raise InvalidInput(
            f"{what} must be a fractions.Fraction or int, got {type(sigma2).__name__} {sigma2!r}; "
            "convert floats explicitly and exactly, e.g. Fraction(x)"
        )
    value = Fraction(sigma2)
    if not 0 < value <= MAX_SIGMA2:
        raise InvalidInput(f"{what} ({value}) must be in (0, 2^80]")
    return value


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or int(size) < 0:
        raise InvalidInput(f"size ({size!r}) must be a non-negative integer")
    return int(size)


def _attempt_scalar(p: _Params, rng: _Rng, u: int | None = None, v: int | None = None) -> int | None:
    """One proposal+acceptance attempt with Python ints; `u`, `v` continue an attempt begun in numpy."""
    if u is None:
        u = rng.randbelow(p.t)
        if not rng.scalar_bernoulli_exp_fraction(u, p.t):
            return None
        v = 0
    assert v is not None
    while rng.scalar_bernoulli_exp_fraction(1, 1):
        v += 1
    y = (u + p.t * v) // p.s
    negative = rng.randbelow(2) == 1
    if negative and y == 0:
        return None
    if not rng.scalar_bernoulli_exp(p.acceptance_num(y), 2 * p.a):
        return None
    return -y if negative else y


def _geometric_capped(rng: _Rng, n: int, vcap: int) -> tuple[U64Array, BoolArray]:
    """V with P(V=v) proportional to e^-v, stopped at vcap; second array marks runs still going at the cap."""
    v = np.zeros(n, dtype=np.uint64)
    active = np.arange(n)
    while active.size:
        cont = rng.bernoulli_exp_minus_one(active.size)
        active = active[cont]
        v[active] += np.uint64(1)
        if active.size and int(v[active[0]]) >= vcap:  # all active share the same count
            break
    running = np.zeros(n, dtype=bool)
    running[active] = True
    return v, running


def _attempt_vector(p: _Params, rng: _Rng, n: int, vcap: int) -> tuple[Int64Array, BoolArray]:
    """One attempt for each of n cells; returns values and which attempts were accepted."""
    values = np.zeros(n, dtype=np.int64)
    accepted = np.zeros(n, dtype=bool)
    t = np.uint64(p.t)
    u = rng.below(p.t, n).astype(np.uint64)
    idx = np.flatnonzero(rng.bernoulli_exp_fraction(u, p.t))
    u = u[idx]
    v, running = _geometric_capped(rng, idx.size, vcap)
    for i in np.flatnonzero(running):  # rare: finish exactly with Python ints
        result = _attempt_scalar(p, rng, int(u[i]), int(v[i]))
        values[idx[i]], accepted[idx[i]] = result or 0, result is not None
    idx, u, v = idx[~running], u[~running], v[~running]
    y = ((u + t * v) // np.uint64(p.s)).astype(np.int64)
    negative = (rng.words(np.uint8, idx.size) & np.uint8(1)).astype(bool)
    keep = ~(negative & (y == 0))
    idx, y, negative = idx[keep], y[keep], negative[keep]
    num = ((y - p.mu) ** 2 * p.b).astype(np.uint64)
    ok = rng.bernoulli_exp(num, 2 * p.a)
    values[idx[ok]] = np.where(negative[ok], -y[ok], y[ok])
    accepted[idx[ok]] = True
    return values, accepted


def _sample(sigma2: Fraction, size: int, rng: _Rng) -> Int64Array:
    p = _Params.of(sigma2)
    out = np.zeros(size, dtype=np.int64)
    vcap = p.vcap()
    if vcap == 0:
        for i in range(size):
            result = _attempt_scalar(p, rng)
            while result is None:
                result = _attempt_scalar(p, rng)
            out[i] = result
        return out
    todo = np.arange(size)
    while todo.size:
        values, accepted = _attempt_vector(p, rng, todo.size, vcap)
        out[todo[accepted]] = values[accepted]
        todo = todo[~accepted]
    return out


def sample_discrete_gaussian(sigma2: Fraction | int, size: int) -> Int64Array:
    """`size` independent draws of the discrete Gaussian N_Z(0, sigma2) (exact; os.urandom)."""
    return _sample(_check_sigma2(sigma2), _check_size(size), _Rng())


def party_noise_share(size: int, sigma_party2: Fraction | int, draws: int = 1) -> Int64Array:
    """One party's share of distributed discrete Gaussian noise, N_Z(0, sigma_party2) per cell; or one of
    the `draws` equal draws that make up a party's share (`cleanroom.accounting.NoiseLayout`).

    The sum of m such draws is not exactly a discrete Gaussian; Kairouz, Liu and Steinke (2021) bound the
    difference by the term tau = 10 * sum_{k=1}^{m-1} exp(-2 pi^2 sigma^2 k/(k+1)) in the privacy guarantee
    (`DistributedGaussian.tau`, always charged). At sigma >= 2 tau is about 7e-17 per extra draw; at
    sigma = 1 about 5e-4, at 0.5 already 0.85. So a party's share must have sigma_party >= 2, and a draw at
    least a `MAX_NOISE_SHARES`-th of that variance (sigma >= 1).
    """
    value = _check_sigma2(sigma_party2, "sigma_party2")
    if not isinstance(draws, int) or not 1 <= draws <= MAX_NOISE_SHARES:
        raise InvalidInput(f"draws ({draws!r}) must be an integer in [1, {MAX_NOISE_SHARES}]")
    if value * draws < MIN_PARTY_SIGMA2:
        raise InvalidInput(
            f"sigma_party2 ({value}) x draws ({draws}) must be >= {MIN_PARTY_SIGMA2} (a party's sigma >= 2): "
            "below that the distributed-noise guarantee's tau term is no longer negligible"
        )
    return _sample(value, _check_size(size), _Rng())
