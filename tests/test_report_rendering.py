"""The party report as a person reads it (issue 13, item 9): labels instead of keys, numbers as people write
them, every "n/a" with its reason, and a layout that works in a real browser at desktop and phone widths.

The browser test drives the system's Chromium (Debian package `chromium`) over the DevTools protocol
(tests/browser.py); it skips where Chromium is absent, except under CI=true (`.ci/run` installs it).
"""

from __future__ import annotations

import math
import os
import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import Browser, file_url, find_chromium, png_size

from cleanroom.encoding import encode
from cleanroom.evaluation.fidelity import default_fidelity_cliques, local_fidelity
from cleanroom.evaluation.membership import gate, run_dcr_attack
from cleanroom.evaluation.report import (
    LocalData,
    PartyReport,
    PrivacyStage,
    UtilitySummary,
    fmt_count,
    fmt_number,
    fmt_score,
    render_html,
    schema_level_names,
    write_report,
)
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema

RAW_KEYS = ("mean_one_way_tvd", "max_two_way_tvd", "auc_binning_bound", "auc_noise_sd", "attack:dcr", "f1<")


def demo_report(max_score: float = 0.8, auc: float = 0.8078) -> PartyReport:
    """A report shaped like a demo job's: the sample schema's 11 columns, the coordinator's stage names."""
    schema_dict, frame, _, _ = demo_dataset(1500, seed=8)
    schema = Schema.from_dict(schema_dict)
    codes = np.asarray(encode(schema, frame).codes, dtype=np.int64)
    real, synthetic = codes[:1000], codes[1000:]
    fidelity = local_fidelity(real, synthetic, schema.domain, default_fidelity_cliques(schema.domain))
    attacks = (run_dcr_attack(real[:800], real[800:], synthetic, schema.domain.shape),)
    stages = [PrivacyStage(f"synthesis round {i} ({n})", 0.003743, 0.486, 1e-9) for i, n in
              enumerate(("one-way", "candidates", "tree"))]  # fmt: skip
    stages += [PrivacyStage(f"evaluation: {s}", 0.0007487, 0.211, 1e-9) for s in ("utility", "attack:dcr")]
    return PartyReport(
        party_id="party1",
        collaboration_id="local-demo",
        job_id=uuid.uuid4().hex,
        privacy=tuple(stages),
        privacy_total=PrivacyStage("zCDP composition (synthesis + evaluation)", 0.01497, 1.0, 1e-9),
        gate=gate({"dcr": 0.528}, max_score),
        utility=UtilitySummary(
            "classification",
            {
                "n": 90020.4,
                "accuracy": 0.8286,
                "f1": 0.4914,
                "auc": auc,
                "auc_binning_bound": 0.00793,
                "auc_noise_sd": 0.0103,
            },
            {"n": 18000.0, "accuracy": 0.8335, "f1": 0.4933, "auc": 0.8129, "auc_binning_bound": 0.00795},
        ),  # fmt: skip
        fidelity=local_fidelity(
            real, synthetic, schema.domain, default_fidelity_cliques(schema.domain, False)
        ),
        local=LocalData(schema.domain, real, synthetic, fidelity, attacks, schema_level_names(schema)),
    )


def test_numbers_are_written_as_people_write_them() -> None:
    assert fmt_count(90020.4) == "90,020" and fmt_count(3000) == "3,000"
    assert fmt_number(0.0007487) == "0.000749" and fmt_number(0.01497) == "0.015"
    assert fmt_number(1e-9) == "1e-9" and fmt_number(1.5e-6) == "1.5e-6"
    assert fmt_number(12345.6) == "12,346" and fmt_number(1.0) == "1" and fmt_number(0.486) == "0.486"
    assert fmt_score(0.80781) == "0.808" and fmt_score(math.nan) == "n/a" and fmt_count(None) == "n/a"


class Cells(HTMLParser):
    """Text of every table cell, and all text."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def test_the_report_shows_labels_and_human_numbers_and_explains_every_n_a() -> None:
    report = demo_report(auc=math.nan)  # e.g. only one class among the combined rows
    parser = Cells()
    parser.feed(render_html(report))
    text = " ".join(parser.text)
    for raw in RAW_KEYS:
        assert raw not in text, raw
    assert not re.search(r"\d(\.\d+)?e[+-]\d{2}", text)  # no 9.002e+04, no 1e-09
    assert re.search(r"\bNone\b|\bnan\b", text) is None
    assert "90,020" in parser.cells and "rows scored" in parser.cells and "mean 1-way TVD" in parser.cells
    assert "evaluation: membership-inference attack DCR (distance to closest record)" in parser.cells
    assert "1e-9" in parser.cells and "0.000749" in parser.cells
    missing = [cell for cell in parser.cells if cell.startswith("n/a")]
    assert missing, "the report should have n/a cells here (AUC, combined association difference)"
    assert all(re.fullmatch(r"n/a \(.{10,}\)", cell) for cell in missing), missing
    assert "n/a (needs rows of both classes among those scored)" in parser.cells
    assert "highest: DCR (distance to closest record) at 0.528" in text


def test_a_blocked_release_is_said_in_words() -> None:
    text = render_html(demo_report(max_score=0.5))
    assert "Not released: no party receives the synthetic data or model" in text
    assert "DCR (distance to closest record) scored 0.528, above the limit 0.500." in text
    assert "exceeds max_membership_inference_score" not in text  # the gate's raw reason stays in the JSON


LAYOUT_CHECK = """(async () => {
  const charts = Array.from(document.querySelectorAll('svg[role="img"]'));
  const width = window.innerWidth;
  return {scrollWidth: document.documentElement.scrollWidth, viewport: width,
          images: charts.length,
          broken: charts.map((c, i) => [i, c.getBoundingClientRect()])
                        .filter(([i, r]) => !(r.width > 0 && r.height > 0 && r.right <= width))
                        .map(([i, r]) => i)};
})()"""


@pytest.fixture(scope="module")
def browser() -> Browser:
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no chromium: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("no chromium on this machine (apt-get install -y chromium) for the report layout test")
    with Browser(executable) as running:
        yield running


@pytest.mark.parametrize("width", [1280, 390])
def test_report_html_lays_out_in_a_real_browser(browser: Browser, tmp_path: Path, width: int) -> None:
    report = demo_report()
    html_path, _ = write_report(report, tmp_path)
    rendering = browser.render(file_url(html_path), width, 900, LAYOUT_CHECK)
    check = rendering.check
    assert check["viewport"] == width  # laid out for the device's width (a phone too: the viewport meta)
    assert check["scrollWidth"] <= width, f"the page is {check['scrollWidth']} px wide in a {width} px window"
    assert check["images"] == len(report.local.domain) + 1  # inline SVG charts: one per column + one
    assert check["broken"] == []  # every chart drawn with a size, inside the window
    assert png_size(rendering.png) == (width, 900)
    (tmp_path / f"report-{width}.png").write_bytes(rendering.png)  # kept with the test's files for a look
