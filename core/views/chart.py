"""The progress chart as data (what to draw, in metric units), and drawn as inline SVG.

The layout is the original autoresearch notebook's progress.png: grey discards, green keeps, the
running best as a step line, kept descriptions annotated, the y-range from the best minus 15% of
the span to the baseline plus 15%. Added: either direction, failures as a rug, wall-clock x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from .run import FAILED, RunView

LABEL_CHARS = 45
COLORS = {
    "discard": "#cccccc",
    "keep": "#2ecc71",
    "best": "#27ae60",
    "label": "#1a7a3a",
    "crash": "#e74c3c",
    "timeout": "#e67e22",
    "invalid": "#8e44ad",
    "interrupted": "#7f8c8d",
    "agent_error": "#34495e",
}


@dataclass
class Point:
    x: float
    y: float
    status: str  # baseline, keep or discard
    number: int
    description: str


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    points: list[Point] = field(default_factory=list)  # measured experiments inside the y-range
    best: list[tuple[float, float]] = field(default_factory=list)  # the running best, a step line
    labels: list[Point] = field(default_factory=list)  # the kept improvements
    rug: list[tuple[float, str, int]] = field(default_factory=list)  # (x, status, number) of failures


def short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 3] + "..."


def y_range(baseline: float, best: float) -> tuple[float, float]:
    """Best minus 15% of the span to baseline plus 15% (either way round)."""
    low, high = sorted((baseline, best))
    margin = 0.15 * (high - low) or 0.05 * abs(baseline) or 0.05
    return low - margin, high + margin


def build(view: RunView, x: str = "number") -> Chart:
    """What to draw for a run; ``x`` is ``number`` (experiment #) or ``time`` (hours of wall clock)."""
    rows = view.rows
    start = min((row["started_at"] for row in rows if row["started_at"]), default=None)

    def x_of(row: dict) -> float:
        if x == "number":
            return float(row["number"])
        moment = row["finished_at"] or row["started_at"]
        return (datetime.fromisoformat(moment) - datetime.fromisoformat(start)).total_seconds() / 3600

    kept = sum(row["status"] == "keep" for row in rows)
    direction = "lower" if view.direction == "lower" else "higher"
    chart = Chart(
        title=f"Autoresearch Progress: {len(rows)} Experiments, {kept} Kept Improvements",
        x_label="Experiment #" if x == "number" else "Wall clock (hours)",
        y_label=f"{view.metric} ({direction} is better)",
        x_range=(0.0, max([x_of(row) for row in rows] + [1.0])),
        y_range=(0.0, 1.0),
    )
    baseline, best = view.baseline, view.best
    if baseline is None or baseline["metric"] is None:
        chart.rug = [(x_of(row), row["status"], row["number"]) for row in rows if row["status"] in FAILED]
        return chart
    chart.y_range = low, high = y_range(baseline["metric"], best["metric"])
    for row in rows:
        if row["status"] in FAILED or row["metric"] is None:
            if row["status"] in FAILED:
                chart.rug.append((x_of(row), row["status"], row["number"]))
            continue
        point = Point(x_of(row), row["metric"], row["status"], row["number"], row["description"] or "")
        if low <= point.y <= high:
            chart.points.append(point)
        if row["status"] == "keep":
            chart.labels.append(point)
    for row in view.incumbents:
        if chart.best:
            chart.best.append((x_of(row), chart.best[-1][1]))
        chart.best.append((x_of(row), row["metric"]))
    chart.best.append((chart.x_range[1], chart.best[-1][1]))
    return chart


# ---- SVG

WIDTH, HEIGHT = 960, 480
LEFT, RIGHT, TOP, BOTTOM = 80, 110, 50, 60  # room on the right for the last labels


def ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round numbers between low and high, about ``count`` of them."""
    span = high - low
    if span <= 0:
        return [low]
    step = 10 ** math.floor(math.log10(span / count))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def svg(chart: Chart) -> str:
    """The chart as a standalone ``<svg>`` element; every ledger text in it is escaped."""
    (x0, x1), (y0, y1) = chart.x_range, chart.y_range
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1) * plot_w

    def py(y: float) -> float:
        return TOP + (y1 - y) / ((y1 - y0) or 1) * plot_h

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" font-family="sans-serif" font-size="11">',
        f"<title>{escape(chart.title)}</title>",
        f'<text class="title" x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">'
        f"{escape(chart.title)}</text>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for value in ticks(y0, y1):
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(value):.1f}" y2="{py(value):.1f}" '
            'stroke="#000" stroke-opacity="0.08"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{py(value) + 4:.1f}" text-anchor="end">{value:.6g}</text>')
    for value in ticks(x0, x1, 10):
        out.append(f'<text x="{px(value):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{value:g}</text>')
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle" font-size="12">'
        f"{escape(chart.x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(18 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        f'font-size="12">{escape(chart.y_label)}</text>'
    )
    if chart.best:
        path = " ".join(f"{px(x):.1f},{py(min(max(y, y0), y1)):.1f}" for x, y in chart.best)
        out.append(
            f'<polyline class="best" points="{path}" fill="none" stroke="{COLORS["best"]}" '
            'stroke-width="2" stroke-opacity="0.7"/>'
        )
    for point in sorted(chart.points, key=lambda p: p.status != "discard"):
        kept = point.status != "discard"
        style = (
            f'r="5" fill="{COLORS["keep"]}" stroke="#000" stroke-width="0.5"'
            if kept
            else f'r="3" fill="{COLORS["discard"]}" fill-opacity="0.8"'
        )
        out.append(
            f'<circle class="point {point.status}" data-number="{point.number}" '
            f'cx="{px(point.x):.1f}" cy="{py(point.y):.1f}" {style}><title>'
            f"#{point.number} {point.status} {point.y:.6g}: {escape(point.description)}"
            "</title></circle>"
        )
    for point in chart.labels:
        if y0 <= point.y <= y1:
            x, y = px(point.x) + 6, py(point.y) - 6
            out.append(
                f'<text class="label" x="{x:.1f}" y="{y:.1f}" transform="rotate(-30 {x:.1f} {y:.1f})" '
                f'fill="{COLORS["label"]}" font-size="10">{escape(short(point.description))}</text>'
            )
    for x, status, number in chart.rug:
        out.append(
            f'<line class="rug {status}" data-number="{number}" x1="{px(x):.1f}" x2="{px(x):.1f}" '
            f'y1="{TOP + plot_h}" y2="{TOP + plot_h - 10}" stroke="{COLORS[status]}" stroke-width="2">'
            f"<title>#{number} {status}</title></line>"
        )
    legend = [("discard", "Discarded"), ("keep", "Kept"), ("best", "Running best"), ("crash", "Failed (rug)")]
    for i, (key, text) in enumerate(legend):
        y = TOP + 14 + i * 15
        out.append(
            f'<rect x="{LEFT + plot_w - 110}" y="{y - 8}" width="10" height="10" fill="{COLORS[key]}"/>'
            f'<text x="{LEFT + plot_w - 95}" y="{y + 1}">{text}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
