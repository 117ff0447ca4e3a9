"""The progress chart as a PNG (or any format matplotlib writes), drawn with matplotlib's Agg."""

from __future__ import annotations

from pathlib import Path

from .chart import COLORS, Chart, short


class MissingMatplotlib(Exception):
    """matplotlib is an optional extra."""


def figure(chart: Chart):
    """A matplotlib Figure of the chart (Agg: no display needed)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        hint = "the plot needs matplotlib: pip install matplotlib (the 'plot' extra)"
        raise MissingMatplotlib(hint) from None
    fig = Figure(figsize=(16, 8))
    ax = fig.subplots()
    for status, label, style in (
        ("discard", "Discarded", {"c": COLORS["discard"], "s": 12, "alpha": 0.5, "zorder": 2}),
        (
            "keep",
            "Kept",
            {"c": COLORS["keep"], "s": 50, "zorder": 4, "edgecolors": "black", "linewidths": 0.5},
        ),
    ):
        points = [p for p in chart.points if (p.status == "discard") == (status == "discard")]
        ax.scatter([p.x for p in points], [p.y for p in points], label=label, **style)
    if chart.best:
        xs, ys = zip(*chart.best, strict=True)
        ax.plot(xs, ys, color=COLORS["best"], linewidth=2, alpha=0.7, zorder=3, label="Running best")
    for point in chart.labels:
        ax.annotate(
            short(point.description),
            (point.x, point.y),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8.0,
            color=COLORS["label"],
            alpha=0.9,
            rotation=30,
            ha="left",
            va="bottom",
            annotation_clip=True,
        )
    low, high = chart.y_range
    for status in dict.fromkeys(status for _, status, _ in chart.rug):
        xs = [x for x, s, _ in chart.rug if s == status]
        ax.vlines(
            xs, low, low + (high - low) * 0.03, colors=COLORS[status], linewidth=2, label=status, zorder=5
        )
    ax.set_xlabel(chart.x_label, fontsize=12)
    ax.set_ylabel(chart.y_label, fontsize=12)
    ax.set_title(chart.title, fontsize=14)
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(True, alpha=0.2)
    ax.set_ylim(low, high)
    return fig


def save(chart: Chart, out: Path) -> Path:
    figure(chart).savefig(out, dpi=150, bbox_inches="tight")
    return out
