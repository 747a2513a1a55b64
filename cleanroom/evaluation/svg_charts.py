"""The report's two plots as inline SVG text: grouped bars (real vs synthetic shares) and a heatmap.

Written directly as SVG elements (rectangles, lines, text) instead of rendering PNGs with matplotlib: a party
writes one chart per column at the end of every job, and matplotlib took about 0.2 s of CPU per chart plus
half a second and 40 MiB to import. Every label is HTML-escaped; the SVG carries no script, no link and no
external reference, so the report still opens offline in any browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

REAL_COLOUR = "#4c72b0"
SYNTHETIC_COLOUR = "#dd8452"
# ColorBrewer "Reds" (9 classes), white to dark red, interpolated linearly for the heatmap
REDS = ("#fff5f0", "#fee0d2", "#fcbba1", "#fc9272", "#fb6a4a", "#ef3b2c", "#cb181d", "#a50f15", "#67000d")
FONT = 'font-family="sans-serif"'


def _svg(width: float, height: float, title: str, body: Sequence[str]) -> str:
    return (
        f'<svg role="img" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
        f"<title>{html.escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, label: str, size: int = 10, anchor: str = "middle", rotate: float = 0) -> str:
    turn = f' transform="rotate({rotate:g} {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" {FONT} text-anchor="{anchor}"{turn}>'
        f"{html.escape(label)}</text>"
    )


def _rect(x: float, y: float, width: float, height: float, colour: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{colour}"/>'


def _y_axis(left: float, top: float, height: float, peak: float) -> list[str]:
    """Ticks at 0, peak/2 and peak (shares) with grid lines."""
    parts = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="#333"/>']
    for fraction in (0.0, 0.5, 1.0):
        y = top + height * (1 - fraction)
        parts.append(f'<line x1="{left - 3}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#333"/>')
        parts.append(_text(left - 5, y + 3, f"{peak * fraction:.2g}", 9, "end"))
    parts.append(_text(12, top + height / 2, "share of rows", 10, "middle", -90))
    return parts


def distribution_svg(title: str, names: Sequence[str], real: NDArray[np.float64],
                     synthetic: NDArray[np.float64]) -> str:  # fmt: skip
    """Grouped bars of one column's level shares: real (this party) vs synthetic."""
    levels = len(names)
    left, top, plot_height = 48.0, 34.0, 130.0
    longest = max((len(n) for n in names), default=1)
    rotated = levels > 6
    slot = max(22.0, 252.0 / max(levels, 1), 0.0 if rotated else 5.5 * longest + 6)
    label_room = min(110.0, 5.0 * longest + 12) if rotated else 18.0
    width = left + slot * levels + 20
    height = top + plot_height + label_room + 6
    peak = float(max(np.max(real, initial=0.0), np.max(synthetic, initial=0.0)))
    peak = peak if peak > 0 else 1.0
    parts = [_text(width / 2, 14, title, 12)]
    parts.append(
        _rect(width - 150, 20, 9, 9, REAL_COLOUR) + _text(width - 137, 28, "real (this party)", 9, "start")
    )
    parts.append(
        _rect(width - 60, 20, 9, 9, SYNTHETIC_COLOUR) + _text(width - 47, 28, "synthetic", 9, "start")
    )
    parts.extend(_y_axis(left, top, plot_height, peak))
    base = top + plot_height
    for i, name in enumerate(names):
        x = left + slot * i + slot / 2  # the centre of the level's slot
        for offset, share, colour in ((-8.0, real[i], REAL_COLOUR), (0.0, synthetic[i], SYNTHETIC_COLOUR)):
            bar = plot_height * float(share) / peak
            parts.append(_rect(x + offset, base - bar, 8.0, bar, colour))
        if rotated:
            parts.append(_text(x, base + 10, name, 8, "end", -60))
        else:
            parts.append(_text(x, base + 12, name, 8))
    parts.append(f'<line x1="{left}" y1="{base}" x2="{left + slot * levels}" y2="{base}" stroke="#333"/>')
    return _svg(width, height, title, parts)


def red(value: float) -> str:
    """The heatmap colour of `value` in [0, 1] (NaN as 0), interpolated between the REDS stops."""
    value = 0.0 if not math.isfinite(value) else min(max(value, 0.0), 1.0)
    position = value * (len(REDS) - 1)
    low = min(int(position), len(REDS) - 2)
    weight = position - low
    a, b = (tuple(int(c[k : k + 2], 16) for k in (1, 3, 5)) for c in (REDS[low], REDS[low + 1]))
    return "#" + "".join(f"{round(x + (y - x) * weight):02x}" for x, y in zip(a, b, strict=True))


def heatmap_svg(title: str, labels: Sequence[str], values: NDArray[np.float64]) -> str:
    """A square matrix of values in [0, 1] as coloured cells, labelled rows and columns, and a colour bar."""
    size = len(labels)
    cell = 16.0
    margin = min(130.0, 6.0 * max((len(n) for n in labels), default=1) + 12)
    left, top = margin, 30.0
    width = max(left + cell * size + 70, 7.0 * len(title) + 20)
    height = top + cell * size + margin
    parts = [_text(width / 2, 16, title, 12)]
    for i in range(size):
        for j in range(size):
            parts.append(_rect(left + cell * j, top + cell * i, cell, cell, red(float(values[i, j]))))
        parts.append(_text(left - 4, top + cell * i + 12, labels[i], 8, "end"))
        x = left + cell * i + 11
        parts.append(_text(x, top + cell * size + 6, labels[i], 8, "end", -90))
    bar_x = left + cell * size + 14
    steps = 20
    for k in range(steps):
        value = 1 - (k + 0.5) / steps
        parts.append(_rect(bar_x, top + k * cell * size / steps, 12, cell * size / steps + 0.5, red(value)))
    parts.append(_text(bar_x + 16, top + 8, "1", 9, "start"))
    parts.append(_text(bar_x + 16, top + cell * size, "0", 9, "start"))
    return _svg(width, height, title, parts)
