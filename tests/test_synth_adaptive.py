"""The adaptive planner: budget, selection from noisy screens, replay, fit, and the missing-level fix."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from governance_fixtures import write_plan
from synth_helpers import TREE_DOMAIN, TREE_EDGES, count, run_rounds, tree_data

from cleanroom.accounting import DistributedGaussian
from cleanroom.encoding import encode
from cleanroom.errors import InvalidInput
from cleanroom.measurement import Measurement
from cleanroom.noise import MIN_PARTY_SIGMA2
from cleanroom.plan import Plan
from cleanroom.schema import Schema
from cleanroom.synth import AdaptivePlanner, MSTPlanner, make_planner
from cleanroom.synth.estimation import EstimationConfig

BUDGET_CASES = [
    {},
    {"target": "e"},
    {"target": "e", "refine_rounds": ("structure", "target", "forest"), "refine_weights": (1.0, 5.0, 0.1)},
    {"one_way_share": 0.9, "screen_share": 0.05, "target_screen_share": 0.0},
    {"target": "c", "one_way_share": 0.01, "target_screen_share": 0.5, "screen_share": 0.48},
    {"n_min": 2, "n_parties": 3, "target": "a"},
]


@pytest.mark.parametrize("settings", BUDGET_CASES)
@pytest.mark.parametrize("rho", [1e-4, 0.05, 5.0, 1e4])
def test_the_rounds_never_spend_more_than_the_budget(settings: dict, rho: float) -> None:
    codes = tree_data(np.random.default_rng(1), 3000)
    planner = AdaptivePlanner(TREE_DOMAIN, rho, **settings)
    specs, _ = run_rounds(planner, TREE_DOMAIN, codes, np.random.default_rng(2))
    total = math.fsum(s.rho for s in specs)
    assert total <= rho * (1 + 1e-12)
    n_min, n_parties = settings.get("n_min", 1), settings.get("n_parties", settings.get("n_min", 1))
    for spec in specs:  # each round's rho is what a party charges for it
        noise = DistributedGaussian(spec.sigma_total2, n_parties, n_min)
        charged = noise.rho(spec.sensitivity_l1, spec.sensitivity_l2, spec.dim(TREE_DOMAIN))
        assert charged == pytest.approx(spec.rho, rel=1e-9)
        assert spec.sigma_total2 / n_min >= MIN_PARTY_SIGMA2
    if rho <= 0.05:  # no per-party noise floor reached: the whole budget is used
        assert total >= rho * (1 - 1e-3)


def test_rounds_screen_then_refine_and_find_the_true_dependencies() -> None:
    codes = tree_data(np.random.default_rng(3), 20000)
    planner = AdaptivePlanner(
        TREE_DOMAIN, 5.0, target="e", structure_pairs=1.0, refine_rounds=("target", "structure")
    )
    specs, measurements = run_rounds(planner, TREE_DOMAIN, codes, np.random.default_rng(4))
    names = [s.name for s in specs]
    assert names == ["one-way", "screen-target", "screen", "refine-1-target", "refine-2-structure"]
    assert set(specs[1].cliques) == {("a", "e"), ("b", "e"), ("c", "e"), ("d", "e")}
    assert ("d", "e") in specs[3].cliques  # the target's strongest dependency is measured precisely
    found = {tuple(sorted(c)) for c in specs[4].cliques} | {tuple(sorted(c)) for c in specs[3].cliques}
    assert found >= TREE_EDGES
    model = planner.estimate(measurements)
    for a, b in sorted(TREE_EDGES):
        truth = count(codes, TREE_DOMAIN, (a, b))
        assert 0.5 * np.abs(model.marginal((a, b)) - truth).sum() / len(codes) < 0.02


def test_a_fit_of_noiseless_rounds_reproduces_the_data() -> None:
    codes = tree_data(np.random.default_rng(5), 5000)
    # with no noise the gain round measures every pair: a loopy model, whose fit needs more steps
    planner = AdaptivePlanner(
        TREE_DOMAIN, 5.0, target="e", compress_z=0.0, estimation=EstimationConfig(max_iters=3000)
    )
    specs, measurements = run_rounds(planner, TREE_DOMAIN, codes, np.random.default_rng(6), noise=False)
    model = planner.estimate(measurements)
    fitted = [(a,) for a in TREE_DOMAIN.attrs] + [
        c for s in specs if s.name.startswith("refine") for c in s.cliques
    ]
    assert len(fitted) > len(TREE_DOMAIN) + 3
    for clique in fitted:  # the model's own cliques (screens off the model are summed to 1-ways)
        assert np.abs(model.marginal(clique) - count(codes, TREE_DOMAIN, clique)).max() < 1.0, clique


def test_a_fresh_planner_replays_the_same_rounds_and_checks_them() -> None:
    codes = tree_data(np.random.default_rng(7), 4000)
    first = AdaptivePlanner(TREE_DOMAIN, 1.0, target="e")
    specs, measurements = run_rounds(first, TREE_DOMAIN, codes, np.random.default_rng(8))
    replayed = AdaptivePlanner(TREE_DOMAIN, 1.0, target="e")
    for i in range(1, len(specs)):
        done = sum(len(s.cliques) for s in specs[:i])
        assert replayed.next_round(measurements[:done]) == specs[i]
    assert replayed.next_round(measurements) is None
    with pytest.raises(InvalidInput, match="1-way"):
        replayed.next_round(measurements[::-1])
    wrong = [*measurements[:-1], Measurement(("a", "c"), np.zeros((3, 2)), 1.0)]
    with pytest.raises(InvalidInput, match="differ from its plan"):
        replayed.next_round(wrong)
    extra = [*measurements, measurements[-1]]
    with pytest.raises(InvalidInput, match="more measurements"):
        replayed.next_round(extra)


def test_round_sizes_bound_every_round_before_any_measurement() -> None:
    codes = tree_data(np.random.default_rng(9), 3000)
    planner = AdaptivePlanner(TREE_DOMAIN, 2.0, target="e", n_min=2, n_parties=3)
    sizes = planner.round_sizes()
    specs, _ = run_rounds(planner, TREE_DOMAIN, codes, np.random.default_rng(10))
    assert [name for name, _, _ in sizes] == [s.name for s in specs]
    assert math.fsum(share for _, _, share in sizes) == pytest.approx(1.0)
    for (_, fewest, share), spec in zip(sizes, specs, strict=True):
        assert len(spec.cliques) >= fewest
        assert spec.rho <= 2.0 * share * (1 + 1e-9)


def test_validation_and_the_factory() -> None:
    with pytest.raises(InvalidInput, match="leave a part"):
        AdaptivePlanner(TREE_DOMAIN, 1.0, one_way_share=0.5, screen_share=0.5)
    with pytest.raises(InvalidInput, match="refine_rounds"):
        AdaptivePlanner(TREE_DOMAIN, 1.0, refine_rounds=("gan",), refine_weights=(1.0,))
    with pytest.raises(InvalidInput, match="target 'z'"):
        AdaptivePlanner(TREE_DOMAIN, 1.0, target="z")
    with pytest.raises(InvalidInput, match=r"synthesizer \('gan'\)"):
        make_planner("gan", TREE_DOMAIN, 1.0)
    with pytest.raises(InvalidInput, match="may not set"):
        make_planner("mst", TREE_DOMAIN, 1.0, settings={"n_min": 3})
    unknown = r"unknown keys \['screen_share'\] for synthesizer 'mst' \(known: "
    with pytest.raises(InvalidInput, match=unknown):
        make_planner("mst", TREE_DOMAIN, 1.0, settings={"screen_share": 0.2})
    mst = make_planner("mst", TREE_DOMAIN, 1.0, n_min=2, n_parties=3, settings={"split": [0.2, 0.3, 0.5]})
    assert isinstance(mst, MSTPlanner) and mst.split == (0.2, 0.3, 0.5) and mst.n_min == 2


def _no_missing_schema() -> Schema:
    return Schema.from_dict(
        {
            "columns": [
                {"name": "x", "type": "categorical", "categories": ["p", "q", "r"]},
                {"name": "y", "type": "numerical", "lower": 0, "upper": 10, "n_bins": 5},
                {"name": "z", "type": "categorical", "categories": ["s", "t"], "target": True},
                {"name": "w", "type": "categorical", "categories": ["u", "v"]},
            ]
        }
    )


def _frame(n: int, rng: np.random.Generator, missing_w: float) -> dict[str, np.ndarray]:
    x = rng.choice(["p", "q", "r"], n, p=[0.5, 0.3, 0.2])
    y = np.where(x == "p", rng.uniform(0, 4, n), rng.uniform(3, 10, n))
    z = np.where((y > 5) ^ (rng.random(n) < 0.2), "t", "s")
    w = rng.choice(np.array(["u", "v"], dtype=object), n).astype(object)
    w[rng.random(n) < missing_w] = None
    return {"x": x, "y": y, "z": z, "w": w}


@pytest.mark.parametrize("synthesizer", ["adaptive", "mst"])
def test_no_missing_level_in_the_output_when_the_data_has_none(synthesizer: str) -> None:
    """Issue 11 (0a): noise used to give every `__missing__` level mass; now a level whose noisy count
    is below 3 sigma is dropped. Columns x, y, z have no missing value; w has 10 % of them."""
    import pandas as pd

    schema = _no_missing_schema()
    domain = schema.domain
    rng = np.random.default_rng(11)
    codes = encode(schema, pd.DataFrame(_frame(4000, rng, 0.1))).codes.astype(np.int64)
    missing = {c.name: c.missing_code for c in schema.measured_columns}
    for seed in range(4):
        planner = make_planner(synthesizer, schema, 0.05, settings={})
        _, measurements = run_rounds(planner, domain, codes, np.random.default_rng(100 + seed))
        synthetic = planner.estimate(measurements).sample(4000, np.random.default_rng(seed))
        for name in ("x", "y", "z"):
            assert not np.any(synthetic[:, domain.index(name)] == missing[name]), (seed, name)
        share = float(np.mean(synthetic[:, domain.index("w")] == missing["w"]))
        assert 0.07 < share < 0.13  # genuine missing values keep their level
    stddev = math.sqrt(float(measurements[0].stddev) ** 2)
    assert 3 * stddev < 0.1 * 4000  # the test's premise: 10 % missing is well above the threshold


def test_the_noise_share_calibration_matches_the_parties_accounting() -> None:
    planner = AdaptivePlanner(TREE_DOMAIN, 0.3, n_min=3, n_parties=5)
    spec = planner.first_round()
    assert isinstance(spec.sigma_total2, Fraction) and spec.sigma_total2 / 3 >= 4
    assert spec.rho <= 0.3 * planner.one_way_share * (1 + 1e-12)


def test_plans_default_to_the_adaptive_synthesizer_and_mst_stays_available(tmp_path: Path) -> None:
    assert Plan.load(write_plan(tmp_path, overrides={"synthesizer": ""}).path).synthesizer == "adaptive"
    assert Plan.load(write_plan(tmp_path, overrides={"synthesizer": '"mst"'}).path).synthesizer == "mst"
