"""Charts as server-rendered SVG: no JavaScript, nothing fetched, nothing to license.

Each function returns the markup of one ``<svg>`` element, every text in it escaped (labels
may come from the store: routes, consumer ids), colours given by CSS classes of the
stylesheet (a strict Content-Security-Policy forbids ``style`` attributes)::

    bar_chart(["10:00", "10:01"], [("2xx", "c2", [5, 7]), ("5xx", "c5", [0, 1])], "Requests")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

__all__ = ["Series", "bar_chart", "line_chart"]

Series = tuple[str, str, Sequence[float | None]]
"""(name, CSS class, one value per bucket; None: no value)"""

WIDTH, HEIGHT = 720, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 36, 32
_X_LABELS = 6


def _nice(maximum: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at least ``maximum`` (1 for nothing)."""
    if not maximum > 0 or not math.isfinite(maximum):
        return 1.0
    power = 10 ** math.floor(math.log10(maximum))
    for step in (1, 2, 5, 10):
        if step * power >= maximum:
            return float(step * power)
    return float(10 * power)


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def _frame(labels: Sequence[str], top: float, title: str, unit: str, series: Sequence[Series]) -> list[str]:
    """The chart's title, legend, grid lines with the y values, and a few x labels."""
    inner_h = HEIGHT - TOP - BOTTOM
    parts = [f'<text class="title" x="{LEFT}" y="20">{escape(title)}</text>']
    x = WIDTH - RIGHT
    for name, klass, _ in reversed(series):
        x -= 16 + 9 * len(name)
        parts.append(f'<rect class="{escape(klass)}" x="{x}" y="8" width="12" height="12"/>')
        parts.append(f'<text class="legend" x="{x + 16}" y="19">{escape(name)}</text>')
        x -= 10
    for i in range(5):
        value = top * i / 4
        y = TOP + inner_h - inner_h * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 5:.1f}" text-anchor="end">'
            f"{escape(_number(value))}{escape(unit)}</text>"
        )
    n = len(labels)
    if n:
        step = max(1, math.ceil(n / _X_LABELS))
        for i in range(0, n, step):
            cx = LEFT + (i + 0.5) * (WIDTH - LEFT - RIGHT) / n
            parts.append(
                f'<text class="axis" x="{cx:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"{escape(labels[i])}</text>"
            )
    return parts


def _svg(parts: list[str], title: str, points: int) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'data-points="{points}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def bar_chart(labels: Sequence[str], stacks: Sequence[Series], title: str, unit: str = "") -> Markup:
    """Stacked bars, one per label, each of the ``stacks`` on the ones before it."""
    n = len(labels)
    totals = [sum(s[2][i] or 0 for s in stacks) for i in range(n)]
    top = _nice(max(totals, default=0))
    parts = _frame(labels, top, title, unit, stacks)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    width = inner_w / n if n else 0
    points = 0
    for i in range(n):
        base = 0.0
        for name, klass, values in stacks:
            value = values[i] or 0
            if value <= 0:
                continue
            points += 1
            h = inner_h * value / top
            y = TOP + inner_h - inner_h * base / top - h
            parts.append(
                f'<rect class="{escape(klass)}" x="{LEFT + i * width + width * 0.1:.1f}" y="{y:.1f}" '
                f'width="{max(width * 0.8, 0.5):.1f}" height="{max(h, 0.5):.1f}">'
                f"<title>{escape(labels[i])} {escape(name)}: {escape(_number(value))}{escape(unit)}</title>"
                "</rect>"
            )
            base += value
    return _svg(parts, title, points)


def line_chart(labels: Sequence[str], lines: Sequence[Series], title: str, unit: str = "") -> Markup:
    """One polyline per series over the labels; a None value breaks the line."""
    n = len(labels)
    top = _nice(max((v for _, _, values in lines for v in values if v is not None), default=0))
    parts = _frame(labels, top, title, unit, lines)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    points = 0
    for name, klass, values in lines:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            points += 1
            x = LEFT + (i + 0.5) * inner_w / n
            y = TOP + inner_h - inner_h * min(value, top) / top
            runs[-1].append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle class="{escape(klass)}" cx="{x:.1f}" cy="{y:.1f}" r="2">'
                f"<title>{escape(labels[i])} {escape(name)}: {escape(_number(value))}{escape(unit)}</title>"
                "</circle>"
            )
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="line {escape(klass)}" points="{" ".join(run)}"/>')
    return _svg(parts, title, points)
