"""Category text that looks like a boolean, a number or a missing marker survives every CSV path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cleanroom.encoding import decode, encode
from cleanroom.errors import InvalidInput
from cleanroom.frames import read_frame, read_untyped
from cleanroom.schema import Schema
from cleanroom.schema_infer import infer_schema

TRICKY = {
    "flag": ["TRUE", "FALSE"],
    "code": ["007", "012", "100"],
    "region": ["NA", "None", "EU"],
}


def tricky_schema() -> Schema:
    columns = [{"name": n, "type": "categorical", "categories": c} for n, c in TRICKY.items()]
    columns.append({"name": "x", "type": "numerical", "lower": 0, "upper": 10, "n_bins": 5})
    return Schema.from_dict({"columns": columns})


def tricky_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.choice(levels, n) for name, levels in TRICKY.items()})
    frame["x"] = rng.uniform(0, 10, n).round(2)
    frame.loc[3, "code"] = None  # one genuine missing value
    return frame


def test_decoded_codes_round_trip_through_csv_and_parquet(tmp_path: Path) -> None:
    schema = tricky_schema()
    codes = encode(schema, tricky_frame(200, seed=1)).codes
    frame = decode(schema, codes, np.random.default_rng(0))
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.to_parquet(tmp_path / "s.parquet", index=False)
    for name in ("s.csv", "s.parquet"):
        back = encode(schema, read_frame(tmp_path / name, schema), source=name)
        np.testing.assert_array_equal(back.codes, codes)
        assert back.report.adjusted == 0 and back.report.column("code").missing == 1


def test_plain_pandas_reading_would_break_the_categories(tmp_path: Path) -> None:
    """The failure `read_frame` prevents: pandas' guesses turn TRUE into True and 007 into 7."""
    path = tmp_path / "s.csv"
    tricky_frame(50, seed=2).to_csv(path, index=False)
    guessed = pd.read_csv(path)
    assert guessed["flag"].dtype == bool and guessed["code"].dtype.kind == "f"
    assert guessed["region"].isna().any()  # "NA" and "None" read as missing
    exact = read_frame(path, tricky_schema())
    assert set(exact["flag"]) == {"TRUE", "FALSE"} and "007" in set(exact["code"])
    assert set(exact["region"]) == {"NA", "None", "EU"} and exact["x"].dtype.kind == "f"


def test_schema_draft_keeps_category_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    tricky_frame(300, seed=3).to_csv(path, index=False)
    schema = infer_schema(path)
    assert schema.column("flag").categories == ("FALSE", "TRUE")
    assert schema.column("code").categories == ("007", "012", "100")
    assert schema.column("region").categories == ("EU", "NA", "None")
    assert schema.column("x").type == "numerical"
    assert encode(schema, read_frame(path, schema)).report.adjusted == 0


def test_untyped_reading_only_converts_plain_numbers(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("a,b,c,d\n1,007,1.5,TRUE\n-2,3,,FALSE\n")
    frame = read_untyped(path)
    assert frame["a"].tolist() == [1, -2] and frame["b"].tolist() == ["007", "3"]
    assert frame["c"].iloc[0] == 1.5 and np.isnan(frame["c"].iloc[1])
    assert frame["d"].tolist() == ["TRUE", "FALSE"]
    with pytest.raises(InvalidInput, match=r"u\.txt: unsupported data file type"):
        read_frame(tmp_path / "u.txt", tricky_schema())
