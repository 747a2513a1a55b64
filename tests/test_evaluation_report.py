"""The party report: all sections, every plot well-formed inline SVG, nothing external, valid JSON."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.evaluation.fidelity import default_fidelity_cliques, local_fidelity
from cleanroom.evaluation.membership import gate, run_dcr_attack
from cleanroom.evaluation.report import (
    SECTIONS,
    LocalData,
    PartyReport,
    PrivacyStage,
    UtilitySummary,
    render_html,
    write_report,
)
from cleanroom.evaluation.svg_charts import distribution_svg, heatmap_svg, red

DOMAIN = Domain(("age", "sex", "job", "income"), (6, 2, 9, 2))


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.svgs = 0
        self.tags: set[str] = set()
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        self.svgs += tag == "svg"
        for name in ("href", "xlink:href", "src", "action", "srcset"):
            if values.get(name):
                self.references.append(str(values[name]))


def make_report(max_score: float) -> PartyReport:
    rng = np.random.default_rng(0)
    real = np.stack([rng.integers(0, s, 400) for s in DOMAIN.shape], axis=1)
    synthetic = np.stack([rng.integers(0, s, 500) for s in DOMAIN.shape], axis=1)
    cliques = default_fidelity_cliques(DOMAIN)
    fidelity = local_fidelity(real, synthetic, DOMAIN, cliques)
    attacks = (run_dcr_attack(real[:300], real[300:], synthetic, DOMAIN.shape),)
    decision = gate({a.attack: a.local_score for a in attacks}, max_score)
    return PartyReport(
        party_id="airline",
        collaboration_id="demo",
        job_id="job-1",
        privacy=(
            PrivacyStage("marginals", 0.03, 0.9, 1e-9),
            PrivacyStage("utility statistics", 0.004, 0.3, 1e-9),
        ),
        privacy_total=PrivacyStage("composed", 0.034, 1.0, 1e-9),
        gate=decision,
        utility=UtilitySummary(
            "classification",
            {"auc": 0.81, "accuracy": 0.8, "f1": math.nan},
            {"auc": 0.84, "accuracy": 0.82, "f1": 0.6},
        ),
        fidelity=fidelity,
        local=LocalData(DOMAIN, real, synthetic, fidelity, attacks, {"sex": ("Female", "Male")}),
    )


def test_html_has_every_section_and_well_formed_plots(tmp_path: Path) -> None:
    html_path, json_path = write_report(make_report(max_score=0.9), tmp_path)
    text = html_path.read_text(encoding="utf-8")
    parser = Collector()
    parser.feed(text)
    assert set(SECTIONS) <= set(parser.ids)
    charts = re.findall(r"<svg .*?</svg>", text)
    assert parser.svgs == len(charts) == len(DOMAIN) + 1  # one distribution per column and the heatmap
    for chart in charts:
        root = ET.fromstring(chart)  # well-formed XML
        assert int(root.get("width", "0")) > 50 and int(root.get("height", "0")) > 50
        assert len(root.findall("rect")) >= 4
        assert {e.tag for e in root.iter()} <= {"svg", "title", "rect", "line", "text"}
    assert parser.references == []
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "http://" not in text and "https://" not in text
    assert "Released" in text and "DCR Delusion" in text
    content = json.loads(
        json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")
    )
    assert content["release"]["released"] is True
    assert content["utility"]["real_combined"]["f1"] is None
    assert len(content["local_detail"]["attacks"]) == 1


def test_blocked_release_is_explained() -> None:
    text = render_html(make_report(max_score=0.5))
    assert "Not released" in text and "above the limit 0.500" in text


def test_invalid_report_parts_are_refused() -> None:
    with pytest.raises(InvalidInput, match="delta"):
        PrivacyStage("marginals", 0.1, 1.0, 1.5)
    with pytest.raises(InvalidInput, match="task"):
        UtilitySummary("ranking", {}, {})


def test_distribution_bars_are_proportional_and_labels_escaped() -> None:
    names = ["a<b", 'x"&y', "plain"]
    chart = distribution_svg("col & <1>", names, np.array([0.5, 0.25, 0.25]), np.array([0.1, 0.2, 0.7]))
    root = ET.fromstring(chart)
    texts = [t.text for t in root.iter("text")]
    assert "col & <1>" in texts and "a<b" in texts and 'x"&y' in texts  # escaped in the text, parsed back
    bars = [r for r in root.iter("rect") if r.get("fill") in ("#4c72b0", "#dd8452")][2:]  # skip legend keys
    heights = [float(r.get("height", "nan")) for r in bars]
    real, synthetic = heights[0::2], heights[1::2]
    assert real[0] == pytest.approx(2 * real[1], abs=0.11) and real[1] == pytest.approx(real[2], abs=0.11)
    assert synthetic[2] == pytest.approx(7 * synthetic[0], abs=0.8) and max(synthetic) == max(heights)


def test_heatmap_colours_follow_the_values() -> None:
    values = np.array([[0.0, 1.0], [0.5, np.nan]])
    root = ET.fromstring(heatmap_svg("t", ["a", "b"], values))
    cells = [r.get("fill") for r in root.iter("rect")][:4]
    assert cells == [red(0.0), red(1.0), red(0.5), red(0.0)]
    assert red(0.0) == "#fff5f0" and red(1.0) == "#67000d" and red(2.0) == red(1.0)
