"""Each party operator's evaluation report: one self-contained HTML file plus the same content as JSON.

Sections (HTML element ids): ``release`` (gate decision), ``privacy-spent`` (rho and (epsilon, delta) per
stage), ``utility`` (combined real-data metrics next to the synthetic-holdout metrics), ``fidelity`` (combined
figures), ``membership-inference`` (combined attack scores, the threshold, what they mean), and
``local-detail`` (this party's exact fidelity and attack scores, per-column real-vs-synthetic distribution
plots and the association-difference heatmap, all computed from the party's own rows and never sent anywhere).

The HTML has inline CSS, no scripts and no external references; plots are inline SVG written by
`svg_charts` (no image files, no matplotlib), so it opens offline in any browser.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cleanroom.domain import Domain
from cleanroom.errors import InvalidInput
from cleanroom.evaluation.fidelity import FidelityReport
from cleanroom.evaluation.membership import AttackOutcome, GateDecision
from cleanroom.evaluation.svg_charts import distribution_svg, heatmap_svg
from cleanroom.schema import Schema

SECTIONS = ("release", "privacy-spent", "utility", "fidelity", "membership-inference", "local-detail")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class PrivacyStage:
    """Budget charged by one stage of the job (e.g. "1-way marginals", "utility statistics")."""

    name: str
    rho: float
    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if self.rho < 0 or self.epsilon < 0 or not 0 <= self.delta < 1:
            raise InvalidInput(
                f"privacy stage {self.name!r}: rho ({self.rho}) and epsilon ({self.epsilon}) "
                f"must be >= 0 and delta ({self.delta}) in [0, 1)"
            )


@dataclass(frozen=True)
class UtilitySummary:
    """Metrics of the same model on the pooled real rows (combined, noisy) and on synthetic holdout rows."""

    task: str
    real: Mapping[str, float]
    synthetic_holdout: Mapping[str, float]
    model: str = "model trained on synthetic data"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidInput(f"task ({self.task!r}) must be one of {TASKS}")


@dataclass(frozen=True)
class LocalData:
    """This party's own rows and the synthetic rows, as codes of `domain`, for the party-only plots."""

    domain: Domain
    real_codes: NDArray[np.int64]
    synthetic_codes: NDArray[np.int64]
    fidelity: FidelityReport
    attacks: tuple[AttackOutcome, ...] = ()
    level_names: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PartyReport:
    """Everything one party's operator sees about a job."""

    party_id: str
    collaboration_id: str
    job_id: str
    privacy: tuple[PrivacyStage, ...]
    gate: GateDecision
    utility: UtilitySummary | None = None
    fidelity: FidelityReport | None = None
    local: LocalData | None = None
    privacy_total: PrivacyStage | None = None  # the accountant's composed total (rho, tight epsilon, delta)


def schema_level_names(schema: Schema) -> dict[str, tuple[str, ...]]:
    """Level labels of every measured column, for `LocalData.level_names`."""
    return {c.name: c.levels for c in schema.measured_columns}


def json_ready(value: object) -> object:
    """Recursively turn numpy scalars into Python numbers and non-finite floats into None."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_json(report: PartyReport) -> dict[str, object]:
    """JSON-ready content of the report (NaN/inf as null)."""
    utility = report.utility
    local = report.local
    content = {
        "party_id": report.party_id,
        "collaboration_id": report.collaboration_id,
        "job_id": report.job_id,
        "release": report.gate.to_dict(),
        "privacy_spent": [vars(stage) for stage in report.privacy],
        "privacy_total": None if report.privacy_total is None else vars(report.privacy_total),
        "utility": None
        if utility is None
        else {
            "task": utility.task,
            "model": utility.model,
            "real_combined": dict(utility.real),
            "synthetic_holdout": dict(utility.synthetic_holdout),
        },
        "fidelity_combined": None if report.fidelity is None else report.fidelity.to_dict(),
        "local_detail": None
        if local is None
        else {
            "fidelity": local.fidelity.to_dict(),
            "attacks": [a.to_dict() for a in local.attacks],
            "real_rows": len(local.real_codes),
            "synthetic_rows": len(local.synthetic_codes),
        },
    }
    cleaned = json_ready(content)
    assert isinstance(cleaned, dict)
    return cleaned


def distribution_chart(local: LocalData, attr: str) -> str:
    """Inline SVG of one attribute's level shares, real (this party) vs synthetic."""
    levels = local.domain.size(attr)
    column = local.domain.index(attr)
    real = np.bincount(local.real_codes[:, column], minlength=levels) / max(len(local.real_codes), 1)
    synthetic = np.bincount(local.synthetic_codes[:, column], minlength=levels) / max(
        len(local.synthetic_codes), 1
    )
    names = [str(n) for n in local.level_names.get(attr, [str(i) for i in range(levels)])]
    return distribution_svg(attr, names, real, synthetic)


def association_heatmap(fidelity: FidelityReport) -> str:
    """Inline SVG heatmap of |Cramér's V real - Cramér's V synthetic| over attribute pairs."""
    values = np.nan_to_num(fidelity.association_difference, nan=0.0)
    return heatmap_svg("association difference |V_real - V_synthetic|", fidelity.attrs, values)


# ---- what a human reads: labels instead of keys, numbers as people write them, n/a with its reason
LABELS = {
    "n": "rows scored",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1 score",
    "auc": "AUC (ROC)",
    "auc_binning_bound": "AUC binning error (at most)",
    "auc_noise_sd": "AUC noise (standard deviation)",
    "rmse": "RMSE (target units)",
    "mae": "MAE (target units)",
    "r2": "R\u00b2",
    "mean_one_way_tvd": "mean 1-way TVD",
    "max_one_way_tvd": "largest 1-way TVD",
    "mean_two_way_tvd": "mean 2-way TVD",
    "max_two_way_tvd": "largest 2-way TVD",
    "mean_association_difference": "mean association difference (Cram\u00e9r's V)",
    "max_association_difference": "largest association difference (Cram\u00e9r's V)",
}
ATTACK_LABELS = {"dcr": "DCR (distance to closest record)", "density_ratio": "density ratio (DOMIAS-style)"}
COUNTS = frozenset({"n"})
_NA_BOTH_CLASSES = "needs rows of both classes among those scored"
NA_REASONS = {
    "auc": _NA_BOTH_CLASSES,
    "auc_binning_bound": _NA_BOTH_CLASSES,
    "auc_noise_sd": _NA_BOTH_CLASSES,
    "accuracy": "no row was scored",
    "precision": "the model predicted no row positive",
    "recall": "no scored row is of the positive class",
    "f1": "no row is positive, predicted or real",
    "r2": "the target does not vary among the scored rows",
    "mean_association_difference": (
        "Cram\u00e9r's V needs the pooled pair tables, which the combined (noisy) figures do not include; "
        "this party's own value is in its detail below"
    ),
    "max_association_difference": (
        "Cram\u00e9r's V needs the pooled pair tables, which the combined (noisy) figures do not include; "
        "this party's own value is in its detail below"
    ),
}
ATTACK_NA = "too few records, or too much noise, to score this attack"


def label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def attack_label(name: str) -> str:
    return ATTACK_LABELS.get(name, name.replace("_", " "))


def stage_label(name: str) -> str:
    """`evaluation: attack:dcr` -> `evaluation: membership-inference attack DCR (distance to ...)`."""
    head, sep, attack = name.partition("attack:")
    return f"{head}membership-inference attack {attack_label(attack)}" if sep else name


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fmt_count(value: object) -> str:
    number = _finite(value)
    return "n/a" if number is None else f"{round(number):,}"


def fmt_number(value: object) -> str:
    """Three significant digits, thousands separators, no exponent for ordinary sizes (0.000749, 12.3,
    1,234); an exponent (`1e-9`) only below 0.0001."""
    number = _finite(value)
    if number is None:
        return "n/a"
    if number == 0 or abs(number) >= 1000:
        return f"{number:,.0f}"
    if abs(number) < 1e-4:
        mantissa, _, exponent = f"{number:.2g}".partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    return f"{number:,.3g}" if abs(number) >= 1 else f"{number:.3g}"


def fmt_score(value: object) -> str:
    """A score or distance in [0, 1] (AUC, accuracy, TVD): three decimals."""
    number = _finite(value)
    return "n/a" if number is None else f"{number:.3f}"


def fmt_metric(key: str, value: object) -> str:
    if key in COUNTS:
        return fmt_count(value)
    if key in ("rmse", "mae"):
        return fmt_number(value)
    return fmt_score(value)


def _cell(text: str, first: bool, missing_reason: str | None = None) -> str:
    """One table cell (figures never break across lines); an "n/a" carries its reason right beside it."""
    css = "" if first else ' class="num"'
    if text == "n/a" and missing_reason:
        return f'<td{css}>n/a <small class="why">({html.escape(missing_reason)})</small></td>'
    return f"<td{css}>{html.escape(text)}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], reasons: Sequence[str | None] = ()) -> str:
    """A table of already formatted cells, in a box that scrolls sideways on a narrow screen."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = ""
    for index, row in enumerate(rows):
        reason = reasons[index] if index < len(reasons) else None
        body += "<tr>" + "".join(_cell(v, i == 0, reason) for i, v in enumerate(row)) + "</tr>"
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{body}</section>'


_CSS = (
    "body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em;color:#222;line-height:1.4}"
    "h1{font-size:1.5em;overflow-wrap:anywhere}p{overflow-wrap:break-word}"
    ".table{overflow-x:auto;max-width:100%}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}.num{white-space:nowrap}.why{color:#555;white-space:normal}"
    ".ok{background:#e3f4e3;padding:.6em}.blocked{background:#fbe3e3;padding:.6em}"
    ".local{border-left:4px solid #4c72b0;padding-left:1em}svg{max-width:100%;height:auto;margin:.3em}"
)


_MIA_TEXT = (
    "<p>Each score is the AUC of an attack that tries to tell the parties' training records (members) "
    "from held-out records (non-members) using only the synthetic data, folded into [0.5, 1]: 0.5 means the "
    "attack does no better than a coin flip, 1 means it always succeeds. <b>DCR</b> (distance to closest "
    "record) is the equivalent of AWS Clean Rooms ML's DISTANCE_TO_CLOSEST_RECORD_V1, on the schema's "
    "binned columns: the number of columns in which a record differs from its closest synthetic record. "
    "A low score "
    "is evidence, not proof, of privacy: this attack is one of many, DCR alone misses leakage that "
    "stronger attacks find (&ldquo;The DCR Delusion&rdquo;, arXiv 2505.01524), and the formal guarantee is "
    "the differential-privacy budget above.</p>"
)


def gate_sentence(gate: GateDecision) -> str:
    """Why the gate decided as it did, in words (the JSON keeps the gate's own reason)."""
    limit = fmt_score(gate.max_score)
    scores = {name: _finite(value) for name, value in gate.scores.items()}
    if gate.released and gate.max_score >= 1.0:
        return "The plan sets no membership-inference limit (max_membership_inference_score 1)."
    if gate.released:
        top = max(scores, key=lambda n: scores[n] or 0.0)
        return (
            f"Every membership-inference attack scored at or below the limit {limit} (highest: "
            f"{attack_label(top)} at {fmt_score(scores[top])})."
        )
    unknown = [attack_label(n) for n, v in scores.items() if v is None]
    if not scores or unknown:
        which = ", ".join(unknown) or "no attack"
        return (
            f"The score of {which} could not be computed ({ATTACK_NA}), and the gate releases nothing it "
            "cannot check."
        )
    over = [
        f"{attack_label(n)} scored {fmt_score(v)}"
        for n, v in scores.items()
        if v is not None and v > gate.max_score
    ]
    return f"{', '.join(over)[:1].upper()}{', '.join(over)[1:]}, above the limit {limit}."


def _release_section(gate: GateDecision) -> str:
    css = "ok" if gate.released else "blocked"
    verdict = "Released" if gate.released else "Not released: no party receives the synthetic data or model"
    body = f'<div class="{css}"><b>{html.escape(verdict)}</b><br>{html.escape(gate_sentence(gate))}</div>'
    return _section("release", "Release decision", body)


def _privacy_row(stage: PrivacyStage, name: str) -> list[str]:
    return [name, fmt_number(stage.rho), fmt_number(stage.epsilon), fmt_number(stage.delta)]


def _privacy_section(report: PartyReport) -> str:
    rows = [_privacy_row(s, stage_label(s.name)) for s in report.privacy]
    if report.privacy_total is not None:
        rows.append(_privacy_row(report.privacy_total, f"total ({report.privacy_total.name})"))
    note = "<p>rho is zero-concentrated DP; rho values add up across stages.</p>"
    return _section(
        "privacy-spent", "Privacy spent", _table(["stage", "rho", "epsilon", "delta"], rows) + note
    )


def _utility_section(utility: UtilitySummary | None) -> str:
    if utility is None:
        return _section("utility", "Utility", "<p>No model was evaluated in this job.</p>")
    names = list(utility.real) + [n for n in utility.synthetic_holdout if n not in utility.real]
    rows, reasons = [], []
    for name in names:
        real = fmt_metric(name, utility.real.get(name, math.nan))
        holdout = fmt_metric(name, utility.synthetic_holdout.get(name, math.nan))
        if name not in utility.synthetic_holdout:
            holdout = "\u2014"  # not a figure of the synthetic holdout (e.g. the noise of the combined AUC)
        rows.append([label(name), real, holdout])
        reasons.append(NA_REASONS.get(name, "not computed in this job"))
    intro = (
        f"<p>Task: {html.escape(utility.task)}; {html.escape(utility.model)}. <i>Real</i> is computed by "
        "every party on its own rows and combined with noise by secure aggregation (scores binned for "
        "AUC); <i>synthetic holdout</i> is the same model on held-out synthetic rows.</p>"
    )
    table = _table(["metric", "real data (combined)", "synthetic holdout"], rows, reasons)
    return _section("utility", "Utility (train on synthetic, test on real)", intro + table)


def _summary_table(summary: Mapping[str, float]) -> str:
    rows = [[label(k), fmt_score(v)] for k, v in summary.items()]
    reasons = [NA_REASONS.get(k, "not computed in this job") for k in summary]
    return _table(["measure", "value"], rows, reasons)


def _fidelity_section(fidelity: FidelityReport | None) -> str:
    if fidelity is None:
        return _section("fidelity", "Fidelity (all parties)", "<p>Not computed in this job.</p>")
    columns = _table(["column", "1-way TVD"], [[c, fmt_score(v)] for c, v in fidelity.one_way_tvd.items()])
    intro = (
        "<p>Total variation distance (TVD: 0 = identical distributions, 1 = disjoint) between the real data "
        "of all parties (combined with noise by secure aggregation) and the synthetic data, per column and "
        "per pair of columns; with the per-party form it is the row-weighted mean of each party's own TVD. "
        "Association differences (Cram\u00e9r's V) are shown only when pooled count tables were combined.</p>"
    )
    return _section(
        "fidelity", "Fidelity (all parties, combined)", intro + _summary_table(fidelity.summary()) + columns
    )


def _membership_section(gate: GateDecision) -> str:
    rows, reasons = [], []
    for name, score in gate.scores.items():
        value = _finite(score)
        verdict = "n/a" if value is None else ("above" if value > gate.max_score else "at or below")
        rows.append([attack_label(name), fmt_score(score), verdict])
        reasons.append(ATTACK_NA)
    table = _table(["attack", "combined score", f"vs the limit {fmt_score(gate.max_score)}"], rows, reasons)
    return _section(
        "membership-inference", "Membership-inference scores (all parties, combined)", table + _MIA_TEXT
    )


def _local_section(local: LocalData | None) -> str:
    if local is None:
        return _section("local-detail", "This party's own detail", "<p>No local data was attached.</p>")
    parts = [
        '<div class="local"><p>Computed from this party\'s own rows only; it never leaves this party.</p>',
        _summary_table(local.fidelity.summary()),
    ]
    if local.attacks:
        rows = [
            [
                attack_label(a.attack),
                fmt_score(a.local_score),
                fmt_count(a.n_members),
                fmt_count(a.n_nonmembers),
            ]
            for a in local.attacks
        ]
        header = ["attack", "score on this party's records", "members", "non-members"]
        parts.append(_table(header, rows, [ATTACK_NA] * len(rows)))
    parts.append("<h3>Real vs synthetic distributions</h3>")
    parts.extend(distribution_chart(local, attr) for attr in local.domain.attrs)
    parts.append("<h3>Association difference</h3>")
    parts.append(association_heatmap(local.fidelity))
    return _section("local-detail", "This party's own detail", "".join(parts) + "</div>")


def render_html(report: PartyReport) -> str:
    """The whole report as one self-contained HTML document."""
    title = f"cleanroom evaluation: {report.collaboration_id} / {report.job_id} / {report.party_id}"
    body = "".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            _release_section(report.gate),
            _privacy_section(report),
            _utility_section(report.utility),
            _fidelity_section(report.fidelity),
            _membership_section(report.gate),
            _local_section(report.local),
        ]
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def write_report(report: PartyReport, directory: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into `directory` (created if needed); returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    html_path, json_path = directory / "report.html", directory / "report.json"
    html_path.write_text(render_html(report), encoding="utf-8")
    json_path.write_text(json.dumps(report_json(report), indent=2, allow_nan=False), encoding="utf-8")
    return html_path, json_path
