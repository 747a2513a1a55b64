"""Built-in demo data: customers of an airline alliance and a hotel chain, joined per customer.

The generator is the project's own, written for the demo and the tests (no external data, fully synthetic and
deterministic for a seed). Each row is one customer. Two hidden traits drive everything, so the columns are
correlated the way real travel data is:

- `affluence` (standard normal, rising slightly with age) raises fares, cabin class, room type and the chance
  of an upgrade;
- `business` (a business traveller, more likely between 30 and 60) raises the number of flights and hotel
  nights and favours corporate booking.

Columns: `customer_id` (identifier), `age`, `region` and `country` (home), `loyalty_tier` (from flights plus
noise), `flights_per_year`, `avg_fare` (USD, missing when the customer did not fly), `cabin_class`,
`hotel_nights`, `room_type` (missing without hotel stays), `booking_channel`, and the binary target
`premium_upgrade` ("yes"/"no": bought a paid upgrade last year) whose log-odds depend on affluence, loyalty
tier, business travel, cabin, age and channel, so a model on the observed columns reaches an AUC of about 0.8.

`sample_schema()` is the public schema for these columns with fixed round-number bins (never derived from
the data); every generated value lies inside it. `split_parties` deals the rows to several parties,
optionally skewed by region so that parties are heterogeneous (e.g. one party mostly European customers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cleanroom.errors import InvalidInput
from cleanroom.schema import CATEGORICAL, IDENTIFIER, NUMERICAL, Column, Policy, Schema

REGIONS: dict[str, tuple[str, ...]] = {
    "north_america": ("US", "CA", "MX"),
    "europe": ("DE", "FR", "GB", "ES", "IT"),
    "asia_pacific": ("JP", "CN", "IN", "AU", "SG"),
    "latin_america": ("BR", "AR", "CL", "CO"),
    "middle_east_africa": ("AE", "ZA", "EG", "NG"),
}
REGION_WEIGHTS = (0.30, 0.30, 0.22, 0.10, 0.08)
LOYALTY_TIERS = ("none", "silver", "gold", "platinum")
CABIN_CLASSES = ("economy", "premium_economy", "business", "first")
ROOM_TYPES = ("standard", "deluxe", "suite")
BOOKING_CHANNELS = ("direct_web", "mobile_app", "travel_agent", "corporate")
TARGET = "premium_upgrade"

AGE_BINS = (18, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 90)
FLIGHT_BINS = (0, 1, 2, 4, 6, 10, 15, 20, 30, 50, 80, 150)
FARE_BINS = (0, 100, 200, 300, 400, 500, 700, 1000, 1500, 2000, 3000, 5000)
NIGHT_BINS = (0, 1, 3, 5, 10, 15, 20, 30, 50, 100, 365)


def generate(n_rows: int, seed: int) -> pd.DataFrame:
    """`n_rows` customers; the same seed always gives the same frame."""
    if n_rows < 0:
        raise InvalidInput(f"n_rows ({n_rows}) must be >= 0")
    rng = np.random.default_rng(seed)
    age = np.clip(np.rint(rng.normal(44, 14, n_rows)), 18, 90).astype(np.int64)
    region_index = rng.choice(len(REGIONS), size=n_rows, p=REGION_WEIGHTS)
    affluence = rng.normal(0.012 * (age - 44), 1.0) + np.array([0.3, 0.2, 0.0, -0.4, 0.1])[region_index]
    business = rng.random(n_rows) < np.where((age >= 30) & (age <= 60), 0.38, 0.12)
    flights = _flights(rng, affluence, business)
    tier = _loyalty(rng, flights)
    cabin = _cabin(rng, affluence, business)
    fare = _fare(rng, affluence, business, cabin, flights)
    nights = np.minimum(rng.poisson(np.exp(0.9 + 0.9 * business + 0.25 * affluence)), 365).astype(np.int64)
    room = _room(rng, affluence, nights)
    channel = _channel(rng, age, business)
    upgrade = _upgrade(rng, affluence, business, tier, cabin, age, channel)
    return pd.DataFrame(
        {
            "customer_id": _customer_ids(rng, n_rows),
            "age": age,
            "region": np.array(list(REGIONS), dtype=object)[region_index],
            "country": _countries(rng, region_index),
            "loyalty_tier": np.array(LOYALTY_TIERS, dtype=object)[tier],
            "flights_per_year": flights,
            "avg_fare": fare,
            "cabin_class": np.array(CABIN_CLASSES, dtype=object)[cabin],
            "hotel_nights": nights,
            "room_type": room,
            "booking_channel": np.array(BOOKING_CHANNELS, dtype=object)[channel],
            TARGET: np.where(upgrade, "yes", "no").astype(object),
        }
    )


def _customer_ids(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    numbers = rng.choice(90_000_000, size=n_rows, replace=False) + 10_000_000
    return np.array([f"CUST-{n}" for n in numbers], dtype=object)


def _countries(rng: np.random.Generator, region_index: np.ndarray) -> np.ndarray:
    out = np.empty(region_index.shape, dtype=object)
    for i, countries in enumerate(REGIONS.values()):
        rows = region_index == i
        # the first country of each region is its largest market
        weights = np.array([2.0] + [1.0] * (len(countries) - 1))
        out[rows] = rng.choice(
            np.array(countries, dtype=object), size=int(rows.sum()), p=weights / weights.sum()
        )
    return out


def _flights(rng: np.random.Generator, affluence: np.ndarray, business: np.ndarray) -> np.ndarray:
    rate = np.exp(0.8 + 1.6 * business + 0.3 * affluence)
    heavy = rng.gamma(2.0, 0.5, affluence.shape)  # overdispersion: a few very frequent flyers
    return np.asarray(np.minimum(rng.poisson(rate * heavy), 150), dtype=np.int64)


def _loyalty(rng: np.random.Generator, flights: np.ndarray) -> np.ndarray:
    score = np.log1p(flights) + rng.normal(0, 0.45, flights.shape)
    return np.asarray(np.digitize(score, (1.6, 2.5, 3.3)), dtype=np.int64)


def _choose(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One draw per row from softmax(logits) (rows x options), by the Gumbel-max trick."""
    return np.asarray(np.argmax(logits + rng.gumbel(size=logits.shape), axis=1), dtype=np.int64)


def _cabin(rng: np.random.Generator, affluence: np.ndarray, business: np.ndarray) -> np.ndarray:
    base = np.array([2.5, 0.4, -0.6, -2.6])
    slope = np.array([0.0, 0.6, 1.2, 1.7])
    logits = base + np.outer(affluence, slope) + np.outer(business, [0.0, 0.3, 1.2, 0.4])
    return _choose(rng, logits)


def _fare(
    rng: np.random.Generator,
    affluence: np.ndarray,
    business: np.ndarray,
    cabin: np.ndarray,
    flights: np.ndarray,
) -> np.ndarray:
    log_fare = 5.3 + 0.35 * affluence + 0.25 * business + np.array([0.0, 0.5, 1.2, 1.8])[cabin]
    fare = np.clip(np.round(np.exp(log_fare + rng.normal(0, 0.3, affluence.shape)), 2), 20.0, 4999.0)
    return np.where(flights > 0, fare, np.nan)


def _room(rng: np.random.Generator, affluence: np.ndarray, nights: np.ndarray) -> np.ndarray:
    logits = np.array([1.5, 0.0, -2.0]) + np.outer(affluence, [0.0, 0.8, 1.5])
    room: np.ndarray = np.array(ROOM_TYPES, dtype=object)[_choose(rng, logits)]
    room[nights == 0] = None
    return room


def _channel(rng: np.random.Generator, age: np.ndarray, business: np.ndarray) -> np.ndarray:
    young = (45 - age) / 15
    logits = np.array([1.0, 0.3, -0.8, -2.5]) + np.outer(young, [0.0, 0.9, -0.8, 0.0])
    logits = logits + np.outer(business, [0.0, 0.0, 0.3, 3.0])
    return _choose(rng, logits)


def _upgrade(
    rng: np.random.Generator,
    affluence: np.ndarray,
    business: np.ndarray,
    tier: np.ndarray,
    cabin: np.ndarray,
    age: np.ndarray,
    channel: np.ndarray,
) -> np.ndarray:
    log_odds = (
        -3.0
        + 1.1 * affluence
        + np.array([0.0, 0.9, 1.8, 2.6])[tier]
        + 0.8 * business
        + np.array([0.0, 0.8, 0.3, -1.0])[cabin]  # already in first class: little left to upgrade to
        - 0.015 * (age - 44)
        + np.array([0.0, 0.4, -0.3, -0.2])[channel]
    )
    return np.asarray(rng.random(age.shape) < 1.0 / (1.0 + np.exp(-log_odds)), dtype=bool)


def sample_schema() -> Schema:
    """The public schema of the demo data: fixed categories and round-number bins."""
    countries = tuple(c for group in REGIONS.values() for c in group)
    columns = (
        Column("customer_id", IDENTIFIER),
        Column("age", NUMERICAL, lower=18, upper=90, bins=AGE_BINS, integer=True),
        Column("region", CATEGORICAL, categories=tuple(REGIONS)),
        Column("country", CATEGORICAL, categories=countries, policy=Policy(unknown_category="other")),
        Column("loyalty_tier", CATEGORICAL, categories=LOYALTY_TIERS),
        Column("flights_per_year", NUMERICAL, lower=0, upper=150, bins=FLIGHT_BINS, integer=True),
        Column("avg_fare", NUMERICAL, lower=0, upper=5000, bins=FARE_BINS),
        Column("cabin_class", CATEGORICAL, categories=CABIN_CLASSES),
        Column("hotel_nights", NUMERICAL, lower=0, upper=365, bins=NIGHT_BINS, integer=True),
        Column("room_type", CATEGORICAL, categories=ROOM_TYPES),
        Column("booking_channel", CATEGORICAL, categories=BOOKING_CHANNELS),
        Column(TARGET, CATEGORICAL, categories=("no", "yes"), target=True),
    )
    return Schema(columns)


def demo_dataset(n_rows: int, seed: int) -> tuple[dict[str, Any], pd.DataFrame, str, str]:
    """The project's own demo data: (schema as JSON dict, DataFrame, target column, task)."""
    return sample_schema().to_dict(), generate(n_rows, seed=seed), TARGET, "classification"


def split_parties(df: pd.DataFrame, n_parties: int, seed: int, skew: float = 0.0) -> list[pd.DataFrame]:
    """Deal the rows of `df` to `n_parties` (a partition: every row goes to exactly one party).

    With `skew` = 0 each row goes to a uniformly random party. With `skew` > 0 each region has a home party
    (regions dealt round-robin) that receives a row of that region with extra probability `skew`, so the
    parties' data differ in distribution; `skew` = 1 splits purely by region.
    """
    if n_parties < 1:
        raise InvalidInput(f"n_parties ({n_parties}) must be >= 1")
    if not 0.0 <= skew <= 1.0:
        raise InvalidInput(f"skew ({skew}) must be in [0, 1]")
    rng = np.random.default_rng(seed)
    probabilities = np.full((len(df), n_parties), (1.0 - skew) / n_parties)
    if skew > 0:
        if "region" not in df.columns:
            raise InvalidInput("skew > 0 needs a 'region' column to split by")
        home = pd.Categorical(df["region"], categories=list(REGIONS)).codes % n_parties
        probabilities[np.arange(len(df)), home] += skew
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((len(df), 1)) * cumulative[:, -1:]
    party = np.minimum((draws >= cumulative).sum(axis=1), n_parties - 1)
    return [df.iloc[np.flatnonzero(party == p)].reset_index(drop=True) for p in range(n_parties)]
