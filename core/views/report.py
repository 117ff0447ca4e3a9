"""One self-contained HTML file about a run: no scripts, no network, opens from disk."""

from __future__ import annotations

from html import escape

from ..measure import log_tail
from . import chart
from .html import STYLE, cards, number
from .run import RunView

LOG_LINES = 30
CSP = "default-src 'none'; style-src 'unsafe-inline'"  # opened from disk: no script, no network


def improvements_table(view: RunView) -> str:
    rows = []
    for item in view.improvements():
        row = item["row"]
        sigmas = "—" if item["sigmas"] is None else f"{item['sigmas']:.1f}"
        rows.append(
            f"<tr><td>{row['number']}</td><td>{number(item['before'])} → {number(row['metric'])}</td>"
            f"<td>{item['gain']:+.6g}</td><td>{sigmas}</td><td>{escape(row['description'] or '')}</td></tr>"
        )
    if not rows:
        return "<p>No kept improvement yet.</p>"
    columns = ("#", "metric", "gain over previous keep", "gain / σ", "description")
    head = "<tr>" + "".join(f"<th>{name}</th>" for name in columns) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def experiment(view: RunView, row: dict) -> str:
    """One experiment, folded: status, metric and description; unfolded: reason, diff, log tail."""
    parts = [f"<p><b>reason:</b> {escape(row['reason'] or '—')}</p>"]
    who = " ".join(filter(None, [row.get("agent"), row.get("model")]))
    if who:
        parts.append(f"<p><b>agent:</b> {escape(who)}</p>")
    if row["diff"]:
        parts.append(f'<pre class="diff">{escape(row["diff"])}</pre>')
    tail = log_tail(view.log_file(row), LOG_LINES)
    if tail:
        parts.append(
            f'<p><b>log tail</b> ({escape(row["log_path"])}):</p><pre class="log">{escape(tail)}</pre>'
        )
    status = escape(row["status"])
    return (
        f'<details class="experiment" data-number="{row["number"]}"><summary>#{row["number"]} '
        f'<span class="status {status}">{status}</span> {number(row["metric"])} '
        f"{escape(row['description'] or '')}</summary>{''.join(parts)}</details>"
    )


def render(view: RunView) -> str:
    """The report of a run as one HTML document."""
    tag = escape(view.run["tag"])
    target = escape(view.run["target"] or "")
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            f"<title>autoresearch run {tag}</title><style>{STYLE}</style></head><body>",
            f"<h1>Run {tag} <small>({target}, started {escape(view.run['started_at'] or '')})</small></h1>",
            cards(view.kpis()),
            chart.svg(chart.build(view)),
            "<h2>Kept improvements</h2>",
            improvements_table(view),
            "<h2>Every experiment</h2>",
            *(experiment(view, row) for row in view.rows),
            "</body></html>",
        ]
    )
