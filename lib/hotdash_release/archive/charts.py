"""Inline SVG line charts for the archive's pages: no JavaScript library, no network,
readable in any browser and in print. One chart: a few series over the same x axis
(releases, oldest to newest), gaps where a series has no value."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from .htmlpage import Html

PALETTE = ("#0969da", "#1a7f37", "#9a6700", "#cf222e", "#8250df", "#1b7c83", "#bf3989", "#57606a", "#953800")
WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 26


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above value: a y axis that reads well."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value)


def line_chart(
    series: Mapping[str, Sequence[float | None]], x_labels: Sequence[str], *, title: str, unit: str = "s"
) -> Html:
    """Series of equal length as polylines; None leaves a gap. Returns the SVG and its legend."""
    count = len(x_labels)
    values = [v for points in series.values() for v in points if v is not None]
    if count == 0 or not values:
        return Html('<p class="muted">No history yet.</p>')
    top = nice_ceiling(max(values))
    levels = [f"{top * step / 4:.3g} {unit}" for step in range(5)]
    # Room for the longest y-axis label ("0.188 s"), at about 7 px a character, so none is clipped.
    left = max(LEFT, 7 * max(map(len, levels)) + 8)
    plot_w, plot_h = WIDTH - left - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for step, label in enumerate(levels):
        level = top * step / 4
        parts.append(
            f'<line class="grid" x1="{left}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}"/>'
            f'<text x="{left - 4}" y="{y(level) + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
    for i in sorted({0, count - 1}):
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="{"start" if i == 0 else "end"}">'
            f"{escape(x_labels[i])}</text>"
        )
    legend = []
    for colour, (name, points) in zip(_colours(len(series)), series.items(), strict=False):
        for segment in _segments(points):
            coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in segment)
            shape = "polyline" if len(segment) > 1 else "circle"
            if shape == "circle":
                i, v = segment[0]
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"><title>{escape(name)}</title></circle>'
                )
            else:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}">'
                    f"<title>{escape(name)}</title></polyline>"
                )
        legend.append(f'<span><i style="background:{colour}"></i>{escape(name)}</span>')
    parts.append("</svg>")
    return Html("".join(parts) + f'<div class="legend">{"".join(legend)}</div>')


def _colours(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]


def _segments(points: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive values: a missing value breaks the line."""
    segments: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(points):
        if v is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((i, v))
    return [s for s in segments if s]
