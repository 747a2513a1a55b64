"""Privacy accounting in zero-concentrated DP (zCDP) for distributed discrete Gaussian releases.

* `gaussian_rho`: the (discrete or continuous) Gaussian mechanism is D2^2 / (2 sigma^2)-zCDP.
* `DistributedGaussian`: every party adds N_Z(0, sigma_party^2) with sigma_party^2 = sigma_total^2 / n_min, so
  the sum over at least n_min honest shares carries at least sigma_total^2 of noise. Its guarantee follows
  Kairouz, Liu, Steinke (ICML 2021, Thm. 1 / arXiv 2102.06387), including the tau term for the sum of
  discrete Gaussians not being exactly discrete Gaussian; `rho_local` is a party's own fallback guarantee
  if every other party colludes (only its own share protects its data).
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
class DistributedGaussian:
    """Distributed discrete Gaussian noise: each of n_parties adds N_Z(0, sigma_total2 / n_min) per cell.

    n_min is the number of honest shares the guarantee assumes: parties minus tolerated dropouts minus
    parties that may collude with the coordinator.
    """

    sigma_total2: Fraction
    n_parties: int
    n_min: int

    def __post_init__(self) -> None:
        total = _exact_fraction("sigma_total2", self.sigma_total2)
        if total <= 0:
            raise InvalidInput(f"sigma_total2 ({total}) must be > 0")
        object.__setattr__(self, "sigma_total2", total)
        _check_int("n_parties", self.n_parties, 1)
        _check_int("n_min", self.n_min, 1, self.n_parties)

    @property
    def sigma_party2(self) -> Fraction:
        return self.sigma_total2 / self.n_min

    def tau(self, m: int | None = None) -> float:
        """KLS 2021's tau = 10 * sum_{k=1}^{m-1} exp(-2 pi^2 sigma_party^2 k / (k+1)) for m shares."""
        shares = self.n_min if m is None else m
        s2 = float(self.sigma_party2)
        return 10 * math.fsum(math.exp(-2 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, shares))

    def rho(self, sensitivity_l1: Number = 1.0, sensitivity_l2: Number = 1.0, dim: int = 1) -> float:
        """rho-zCDP of the sum of n_min honest shares for a dim-cell query with the given sensitivities."""
        d1, d2 = float(sensitivity_l1), float(sensitivity_l2)
        if not (math.isfinite(d1) and math.isfinite(d2) and d1 >= 0 and d2 >= 0):
            raise InvalidInput(f"sensitivities (L1 {sensitivity_l1}, L2 {sensitivity_l2}) must be >= 0")
        _check_int("dim", dim, 1)
        m, s2, tau = self.n_min, float(self.sigma_party2), self.tau()
        eps_l2 = math.sqrt(d2 * d2 / (m * s2) + tau * dim / 2)
        eps_l1 = d1 / math.sqrt(m * s2) + tau * math.sqrt(dim)
        return min(eps_l2, eps_l1) ** 2 / 2

    def rho_local(self, sensitivity_l2: Number = 1.0) -> float:
        """A party's own guarantee when all others collude: only its own share of noise counts."""
        return gaussian_rho(sensitivity_l2, self.sigma_party2)


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
) -> Fraction:
    """sigma_total2 such that `DistributedGaussian(sigma_total2, n_parties, n_min).rho(...) <= rho_target`.

    sigma_party2 = sigma_total2 / n_min is rounded *up* to a multiple of 1/denominator (so the sampler's
    integers stay small) and never below `min_party_sigma2` (sigma_party >= 2 keeps tau negligible); both only
    add noise, so the realised rho may be a little below the target. Charge the realised rho, not the target.
    L1 sensitivity defaults to the L2 one times sqrt(dim) (its largest possible value).
    """
    target = _positive("rho_target", rho_target)
    d2 = float(sensitivity_l2)
    d1 = d2 * math.sqrt(dim) if sensitivity_l1 is None else float(sensitivity_l1)
    parties = n_min if n_parties is None else n_parties
    _check_int("denominator", denominator, 1)
    _check_int("n_min", n_min, 1)
    ideal_party2 = Fraction(gaussian_rho(d2, 1.0)) / Fraction(target) / n_min
    party2 = max(_round_up(ideal_party2, denominator), Fraction(min_party_sigma2))
    while True:
        noise = DistributedGaussian(party2 * n_min, parties, n_min)
        if noise.rho(d1, d2, dim) <= target:
            return noise.sigma_total2
        # float rounding or the tau term: add a relative 1e-9 (at least one step) and try again
        party2 = _round_up(party2 * (1 + Fraction(1, 10**9)) + Fraction(1, denominator), denominator)


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
