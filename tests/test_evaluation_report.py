"""The party report: all sections, every embedded image a decodable PNG, nothing external, valid JSON."""

from __future__ import annotations

import base64
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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

DOMAIN = Domain(("age", "sex", "job", "income"), (6, 2, 9, 2))


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if tag == "img":
            self.images.append(str(values.get("src")))
        for name in ("href", "src", "action", "srcset"):
            if values.get(name) and not str(values[name]).startswith("data:image/png;base64,"):
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


def test_html_has_every_section_and_decodable_images(tmp_path: Path) -> None:
    html_path, json_path = write_report(make_report(max_score=0.9), tmp_path)
    text = html_path.read_text(encoding="utf-8")
    parser = Collector()
    parser.feed(text)
    assert set(SECTIONS) <= set(parser.ids)
    assert len(parser.images) == len(DOMAIN) + 1  # one distribution per column and the heatmap
    for src in parser.images:
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert image.format == "PNG"
        image.load()  # decodes every pixel (zlib and CRC checks)
        assert image.size[0] > 50 and image.size[1] > 50
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
