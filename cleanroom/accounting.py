"""Privacy accounting in zero-concentrated DP (zCDP) for distributed discrete Gaussian releases.

* `gaussian_rho`: the (discrete or continuous) Gaussian mechanism is D2^2 / (2 sigma^2)-zCDP.
* `DistributedGaussian`: every party adds N_Z(0, sigma_party^2) with sigma_party^2 = sigma_total^2 / n_min, so
  the sum over at least n_min honest shares carries at least sigma_total^2 of noise. Its guarantee follows
  Kairouz, Liu, Steinke (ICML 2021, Thm. 1 / arXiv 2102.06387), including the tau term for the sum of
  discrete Gaussians not being exactly discrete Gaussian; `rho_local` is a party's own fallback guarantee
  if every other party colludes (only its own share protects its data).
* `NoiseLayout`: how a job's noise is split over the parties. With dropouts tolerated, each party's noise is
  `shares` equal draws, enough for the fewest survivors the plan allows; after the survivor list is signed,
  each survivor reveals the draws the actual survivors do not need ("add then remove", Jiang et al.,
  Dordis, EuroSys 2024), so a round nobody drops out of carries the noise of a plan without tolerance.
* `calibrate`: the sigma_total^2 (an exact Fraction with a small denominator, as the sampler wants) whose
  distributed guarantee does not exceed a target rho.
* `cdp_delta`, `cdp_eps`, `cdp_rho`: the tight conversion between rho-zCDP and (eps, delta)-DP of Canonne,
  Kamath, Steinke (2020, arXiv 2004.00010, Prop. / Cor. on zCDP to approximate DP):
  delta = inf_{a > 1} exp((a - 1)(a rho - eps)) / (a - 1) * (1 - 1/a)^a. Each answer errs on the safe side
  (eps and delta rounded up, rho rounded down).
* `compose`, `split_rho`, `Release`: bookkeeping values for the ledger and the synthesizer's stages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from cleanroom.errors import InvalidInput
from cleanroom.noise import MAX_NOISE_SHARES

Number = float | int | Fraction
DEFAULT_DENOMINATOR = 10_000
MIN_PARTY_SIGMA2 = Fraction(4)
_BISECTION_STEPS = 200


def _positive(name: str, value: Number) -> float:
    as_float = float(value)
    if not (math.isfinite(as_float) and as_float > 0):
        raise InvalidInput(f"{name} ({value}) must be a finite number > 0")
    return as_float


def _exact_fraction(name: str, value: object) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Fraction | int):
        kind = type(value).__name__
        raise InvalidInput(f"{name} ({value!r}) must be an exact fractions.Fraction or int, not {kind}")
    return Fraction(value)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    too_high = high is not None and isinstance(value, int) and value > high
    if isinstance(value, bool) or not isinstance(value, int) or value < low or too_high:
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInput(f"{name} ({value!r}) must be an integer {bounds}")
    return value


def gaussian_rho(sensitivity_l2: Number, sigma2: Number) -> float:
    """zCDP rho of Gaussian or discrete Gaussian noise of variance sigma2 on a query of L2 sensitivity."""
    sens = float(sensitivity_l2)
    if not (math.isfinite(sens) and sens >= 0):
        raise InvalidInput(f"sensitivity_l2 ({sensitivity_l2}) must be a finite number >= 0")
    return sens * sens / (2 * _positive("sigma2", sigma2))


@dataclass(frozen=True)
class NoiseLayout:
    """Who adds a round's noise: n_parties parties, each `shares` equal discrete Gaussian draws.

    The guarantee counts n_min honest survivors (parties - tolerated dropouts - colluders), each keeping at
    least `kept(survivors)` of its draws. With `shares` = 1 nothing is ever removed. With dropouts tolerated
    (`for_plan`), a survivor of a round with u signed survivors keeps ceil(shares * n_min / (u - colluders))
    draws and reveals the rest, so the u - colluders honest survivors still hold at least n_min * shares
    draws: the noise the accounting counts (more draws only add independent noise: post-processing).
    """

    n_parties: int
    n_min: int
    colluders: int = 0
    shares: int = 1

    def __post_init__(self) -> None:
        _check_int("n_parties", self.n_parties, 1)
        _check_int("n_min", self.n_min, 1, self.n_parties)
        _check_int("colluders", self.colluders, 0, self.n_parties - self.n_min)
        _check_int("shares", self.shares, 1)

    @classmethod
    def for_plan(cls, n_parties: int, dropout_tolerance: int, colluders: int) -> NoiseLayout:
        """The fewest equal draws that let a full survivor list remove all the noise kept for dropouts:
        (n - c) / gcd(n - c, d). Above `MAX_NOISE_SHARES` draws (large collaborations, where the extra noise
        for d dropouts, d / (n - c - d) of the sum's variance, is small) nothing is removed: a draw's variance
        stays >= 1 when a party's is at its floor of 4, which keeps the charged tau term small."""
        n_min = n_parties - dropout_tolerance - colluders
        honest = n_parties - colluders
        shares = honest // math.gcd(honest, dropout_tolerance) if dropout_tolerance > 0 else 1
        return cls(n_parties, n_min, colluders, shares if shares <= MAX_NOISE_SHARES else 1)

    @property
    def honest_shares(self) -> int:
        """Draws the guarantee counts: n_min honest survivors times `shares`."""
        return self.n_min * self.shares

    def kept(self, survivors: int) -> int:
        """Draws each of `survivors` signed survivors keeps in the sum (the rest it may reveal)."""
        fewest = self.n_min + self.colluders
        honest = _check_int("survivors", survivors, fewest, self.n_parties) - self.colluders
        return -(-self.honest_shares // honest)

    def summed_variance(self, sigma_party2: Fraction, survivors: int, trimmed: int) -> float:
        """Per-cell noise variance of a sum over `survivors` parties of which `trimmed` removed their spare
        draws (the others kept all of theirs)."""
        _check_int("trimmed", trimmed, 0, survivors)
        draws = trimmed * self.kept(survivors) + (survivors - trimmed) * self.shares
        return float(sigma_party2 / self.shares * draws)

    def calibrate(
        self, rho_target: Number, sensitivity_l2: Number = 1.0, sensitivity_l1: Number | None = None,
        dim: int = 1,
    ) -> Fraction:  # fmt: skip
        """`calibrate` for this layout: the sigma_total2 of a round within `rho_target`."""
        return calibrate(
            rho_target, sensitivity_l2, self.n_min, n_parties=self.n_parties, sensitivity_l1=sensitivity_l1,
            dim=dim, shares=self.shares,
        )  # fmt: skip

    def spread(self, survivors: int | None = None) -> float:
        """Noise in the sum of `survivors` (all parties if None) that kept `kept` draws, over sigma_total2."""
        count = self.n_parties if survivors is None else survivors
        return count * self.kept(count) / self.honest_shares


@dataclass(frozen=True)
class DistributedGaussian:
    """Distributed discrete Gaussian noise: each of n_parties adds N_Z(0, sigma_total2 / n_min) per cell,
    as `shares` equal draws of N_Z(0, sigma_total2 / (n_min * shares)) (`NoiseLayout`).

    n_min is the number of honest parties the guarantee assumes: parties minus tolerated dropouts minus
    parties that may collude with the coordinator. The sum it counts is n_min * shares draws.
    """

    sigma_total2: Fraction
    n_parties: int
    n_min: int
    shares: int = 1

    def __post_init__(self) -> None:
        total = _exact_fraction("sigma_total2", self.sigma_total2)
        if total <= 0:
            raise InvalidInput(f"sigma_total2 ({total}) must be > 0")
        object.__setattr__(self, "sigma_total2", total)
        _check_int("n_parties", self.n_parties, 1)
        _check_int("n_min", self.n_min, 1, self.n_parties)
        _check_int("shares", self.shares, 1)

    @classmethod
    def of(cls, sigma_total2: Fraction, layout: NoiseLayout) -> DistributedGaussian:
        return cls(sigma_total2, layout.n_parties, layout.n_min, layout.shares)

    @property
    def sigma_party2(self) -> Fraction:
        return self.sigma_total2 / self.n_min

    @property
    def sigma_share2(self) -> Fraction:
        """Variance of one draw: a party's noise is `shares` of them."""
        return self.sigma_party2 / self.shares

    def tau(self, m: int | None = None) -> float:
        """KLS 2021's tau = 10 * sum_{k=1}^{m-1} exp(-2 pi^2 sigma_share^2 k / (k+1)) for m draws."""
        draws = self.n_min * self.shares if m is None else m
        s2 = float(self.sigma_share2)
        return 10 * math.fsum(math.exp(-2 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, draws))

    def rho(self, sensitivity_l1: Number = 1.0, sensitivity_l2: Number = 1.0, dim: int = 1) -> float:
        """rho-zCDP of the sum of n_min honest shares for a dim-cell query with the given sensitivities."""
        d1, d2 = float(sensitivity_l1), float(sensitivity_l2)
        if not (math.isfinite(d1) and math.isfinite(d2) and d1 >= 0 and d2 >= 0):
            raise InvalidInput(f"sensitivities (L1 {sensitivity_l1}, L2 {sensitivity_l2}) must be >= 0")
        _check_int("dim", dim, 1)
        m, s2, tau = self.n_min * self.shares, float(self.sigma_share2), self.tau()
        eps_l2 = math.sqrt(d2 * d2 / (m * s2) + tau * dim / 2)
        eps_l1 = d1 / math.sqrt(m * s2) + tau * math.sqrt(dim)
        return min(eps_l2, eps_l1) ** 2 / 2

    def rho_local(self, sensitivity_l2: Number = 1.0, kept: int | None = None) -> float:
        """A party's own guarantee when all others collude: only the `kept` draws of its own noise (all of
        them if None; `NoiseLayout.kept` of a full survivor list is the fewest it ever keeps) count."""
        draws = self.shares if kept is None else _check_int("kept", kept, 1, self.shares)
        return gaussian_rho(sensitivity_l2, self.sigma_share2 * draws)


def _round_up(value: Fraction, denominator: int) -> Fraction:
    return Fraction(math.ceil(value * denominator), denominator)


def calibrate(
    rho_target: Number,
    sensitivity_l2: Number = 1.0,
    n_min: int = 1,
    *,
    n_parties: int | None = None,
    sensitivity_l1: Number | None = None,
    dim: int = 1,
    denominator: int = DEFAULT_DENOMINATOR,
    min_party_sigma2: Fraction = MIN_PARTY_SIGMA2,
    shares: int = 1,
) -> Fraction:
    """sigma_total2 such that `DistributedGaussian(sigma_total2, n_parties, n_min, shares).rho(...) <=
    rho_target`.

    The variance of one draw, sigma_total2 / (n_min * shares), is rounded *up* to a multiple of 1/denominator
    (so the sampler's integers stay small) and never below `min_party_sigma2 / shares` (a party's sigma >= 2
    keeps tau small; tau is charged in full whatever it is); both only add noise, so the realised rho may be
    a little below the target. Charge the realised rho, not the target. L1 sensitivity defaults to the L2 one
    times sqrt(dim) (its largest value).
    """
    target = _positive("rho_target", rho_target)
    d2 = float(sensitivity_l2)
    d1 = d2 * math.sqrt(dim) if sensitivity_l1 is None else float(sensitivity_l1)
    parties = n_min if n_parties is None else n_parties
    _check_int("denominator", denominator, 1)
    _check_int("n_min", n_min, 1)
    draws = n_min * _check_int("shares", shares, 1)
    ideal_draw2 = Fraction(gaussian_rho(d2, 1.0)) / Fraction(target) / draws
    floor = _round_up(Fraction(min_party_sigma2) / shares, denominator)
    draw2 = max(_round_up(ideal_draw2, denominator), floor)
    while True:
        noise = DistributedGaussian(draw2 * draws, parties, n_min, shares)
        if noise.rho(d1, d2, dim) <= target:
            return noise.sigma_total2
        # float rounding or the tau term: add a relative 1e-9 (at least one step) and try again
        draw2 = _round_up(draw2 * (1 + Fraction(1, 10**9)) + Fraction(1, denominator), denominator)


def _log_delta_at(alpha: float, rho: float, eps: float) -> float:
    return (alpha - 1) * (alpha * rho - eps) + alpha * math.log1p(-1 / alpha) - math.log(alpha - 1)


def cdp_delta(rho: Number, eps: Number) -> float:
    """Smallest delta for which rho-zCDP implies (eps, delta)-DP (tight CKS 2020 conversion)."""
    r = _positive("rho", rho)
    e = float(eps)
    if not (math.isfinite(e) and e >= 0):
        raise InvalidInput(f"eps ({eps}) must be a finite number >= 0")
    # log delta(alpha) is convex on (1, inf) with derivative (2 alpha - 1) rho - eps + log(1 - 1/alpha),
    # negative near 1 and positive beyond (eps + 1) / (2 rho) + 2: bisect for its root.
    lo, hi = 1.0 + 1e-12, (e + 1) / (2 * r) + 2
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        if (2 * mid - 1) * r - e + math.log1p(-1 / mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    # any alpha gives a valid delta; take the smaller of the two ends
    log_delta = min(_log_delta_at(lo, r, e), _log_delta_at(hi, r, e))
    return min(1.0, math.exp(log_delta))


def _closed_form_eps(rho: float, delta: float) -> float:
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def _check_delta(delta: Number) -> float:
    d = float(delta)
    if not 0 < d < 1:
        raise InvalidInput(f"delta ({delta}) must be in (0, 1)")
    return d


def cdp_eps(rho: Number, delta: Number) -> float:
    """Smallest eps (rounded up) such that rho-zCDP implies (eps, delta)-DP."""
    r, d = _positive("rho", rho), _check_delta(delta)
    lo, hi = 0.0, _closed_form_eps(r, d)  # the closed form is always a valid (loose) answer
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        if cdp_delta(r, mid) <= d:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-13 * hi:
            break
    return hi


@lru_cache(maxsize=256)
def cdp_rho(eps: Number, delta: Number) -> float:
    """Largest rho (rounded down) such that rho-zCDP implies (eps, delta)-DP.

    Cached: a party node converts its plan's limits at every round (a bisection of ~50 `cdp_delta` calls).
    """
    e, d = _positive("eps", eps), _check_delta(delta)
    lo, hi = 0.0, e + 1.0  # cdp_delta(e + 1, e) > delta for any delta < 1 worth asking for
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        if cdp_delta(mid, e) <= d:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    if lo == 0.0:
        raise InvalidInput(f"no rho > 0 gives (eps={eps}, delta={delta})-DP")
    return lo


def compose(rhos: Iterable[Number]) -> float:
    """zCDP composes additively."""
    values = [float(r) for r in rhos]
    for value in values:
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInput(f"rho ({value}) must be a finite number >= 0")
    return math.fsum(values)


def split_rho(total: Number, weights: Sequence[Number]) -> tuple[Fraction, ...]:
    """Split `total` in proportion to `weights` into exact Fractions whose sum is exactly Fraction(total)."""
    exact_total = Fraction(total)
    if not (math.isfinite(float(total)) and exact_total > 0):
        raise InvalidInput(f"total rho ({total}) must be a finite number > 0")
    exact_weights = [Fraction(w) for w in weights]
    if not exact_weights or any(w < 0 for w in exact_weights) or sum(exact_weights) == 0:
        raise InvalidInput(f"weights ({list(weights)}) must be non-negative with a positive sum")
    weight_sum = sum(exact_weights, Fraction(0))
    return tuple(exact_total * w / weight_sum for w in exact_weights)


@dataclass(frozen=True)
class Release:
    """What a party records about one noised release (one secure-aggregation round's vector)."""

    release_id: str
    cliques: tuple[tuple[str, ...], ...]
    sensitivity_l2: float
    sigma_party2: Fraction
    n_min: int
    rho: float

    def __post_init__(self) -> None:
        if not isinstance(self.release_id, str) or not self.release_id:
            raise InvalidInput(f"release_id ({self.release_id!r}) must be a non-empty string")
        cliques = tuple(tuple(str(a) for a in clique) for clique in self.cliques)
        if not cliques or any(not clique for clique in cliques):
            raise InvalidInput(f"cliques of release {self.release_id} ({self.cliques!r}) must be non-empty")
        object.__setattr__(self, "cliques", cliques)
        object.__setattr__(self, "sigma_party2", _exact_fraction("sigma_party2", self.sigma_party2))
        if self.sigma_party2 <= 0:
            raise InvalidInput(f"sigma_party2 ({self.sigma_party2}) of release {self.release_id} must be > 0")
        _positive(f"sensitivity_l2 of release {self.release_id}", self.sensitivity_l2)
        _positive(f"rho of release {self.release_id}", self.rho)
        _check_int(f"n_min of release {self.release_id}", self.n_min, 1)
