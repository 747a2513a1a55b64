"""Generated data for `cleanroom demo --vertical`: an airline and a hotel chain with overlapping customers.

The airline holds flights, miles and cabin; the hotel chain holds stays, spend, loyalty and the target
`high_value`; both key their customers by e-mail address (written with stray spaces and capitals now and
then, as real exports are: the join key is normalised). A latent travel intensity and wealth drive columns at
both parties, so the target depends on columns the hotel does not hold: the cross-party tables matter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

AIRLINE, HOTEL = "airline", "hotel"
COLUMNS = {AIRLINE: ("flights", "miles", "cabin"), HOTEL: ("stays", "spend", "loyalty", "high_value")}
TARGET = "high_value"

SCHEMA: dict[str, Any] = {
    "columns": [
        {"name": "email", "type": "identifier", "join_key": True},
        {"name": "flights", "type": "numerical", "lower": 0, "upper": 60, "bins": [0, 2, 5, 10, 20, 35, 60],
         "integer": True},
        {"name": "miles", "type": "numerical", "lower": 0, "upper": 200000,
         "bins": [0, 5000, 15000, 30000, 60000, 100000, 200000]},
        {"name": "cabin", "type": "categorical", "categories": ["economy", "premium", "business", "first"]},
        {"name": "stays", "type": "numerical", "lower": 0, "upper": 50, "bins": [0, 1, 3, 6, 12, 25, 50],
         "integer": True},
        {"name": "spend", "type": "numerical", "lower": 0, "upper": 20000,
         "bins": [0, 500, 1500, 3000, 6000, 10000, 20000]},
        {"name": "loyalty", "type": "categorical", "categories": ["none", "silver", "gold", "platinum"]},
        {"name": "high_value", "type": "categorical", "categories": ["no", "yes"], "target": True},
    ],
    "policy": {"unknown_category": "other", "out_of_range": "clip", "missing": "level"},
}  # fmt: skip


def customers(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Every column for `n` customers (the joined view; each party gets its own columns)."""
    intensity = rng.gamma(1.5, 1.0, n)
    wealth = rng.normal(0, 1, n)
    flights = np.clip(rng.poisson(3 * intensity), 0, 60)
    cabin_score = wealth + 0.3 * intensity + rng.normal(0, 0.7, n)
    cabin = np.select([cabin_score > 2.0, cabin_score > 1.0, cabin_score > 0.2],
                      ["first", "business", "premium"], "economy")  # fmt: skip
    stays = np.clip(rng.poisson(2.5 * intensity + 0.5), 0, 50)
    spend = np.clip(stays * np.exp(5.3 + 0.5 * wealth + rng.normal(0, 0.4, n)), 0, 20000).round(2)
    loyalty = np.select([stays > 14, stays > 7, stays > 3], ["platinum", "gold", "silver"], "none")
    score = 0.9 * wealth + 0.5 * np.log1p(flights) + 0.6 * (cabin != "economy") + 0.2 * np.log1p(stays)
    high_value = np.where(score + rng.normal(0, 0.6, n) > 1.4, "yes", "no")
    return pd.DataFrame({
        "email": [f"customer{i:07d}@example.com" for i in range(n)],
        "flights": flights, "miles": np.clip(flights * rng.gamma(4.0, 900.0, n), 0, 200000).round(),
        "cabin": cabin, "stays": stays, "spend": spend, "loyalty": loyalty, "high_value": high_value,
    })  # fmt: skip


def demo_parties(rows: int, overlap: float, seed: int) -> dict[str, pd.DataFrame]:
    """`rows` customers at each party, `overlap` of them at both; rows shuffled, keys written untidily."""
    rng = np.random.default_rng(seed)
    shared = int(round(rows * overlap))
    table = customers(shared + 2 * (rows - shared), rng)
    untidy = rng.random(len(table)) < 0.2
    table.loc[untidy, "email"] = "  " + table.loc[untidy, "email"].str.upper() + " "
    airline = list(range(rows))
    hotel = list(range(shared)) + list(range(rows, rows + rows - shared))
    out = {}
    for party, index in ((AIRLINE, airline), (HOTEL, hotel)):
        frame = table.iloc[index][["email", *COLUMNS[party]]]
        out[party] = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return out
