"""HTML pieces that the report and the dashboard share: the style and the KPI cards."""

from __future__ import annotations

from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; padding: 0 1rem; max-width: 1100px; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .8rem; min-width: 9rem; }
.card .value { font-size: 1.15rem; font-weight: 600; } .card .name { color: #666; font-size: .8rem; }
svg.chart { width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; }
th { cursor: pointer; user-select: none; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: .8rem; white-space: pre-wrap; }
.status { font-weight: 600; } .keep, .baseline { color: #1a7a3a; } .discard { color: #888; }
.crash, .timeout { color: #c0392b; } .invalid, .agent_error, .interrupted { color: #8e44ad; }
details { border-bottom: 1px solid #eee; padding: .3rem 0; } summary { cursor: pointer; }
"""


def number(value: float | None, digits: int = 6) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def cards(kpis: dict) -> str:
    """The KPI cards; every value is formatted and escaped here."""
    change = kpis["change_percent"]
    noise = kpis["noise"]
    items = [
        (
            f"{kpis['metric']} ({kpis['direction']} is better)",
            f"{number(kpis['baseline'])} → {number(kpis['best'])}",
        ),
        ("change from baseline", "—" if change is None else f"{change:+.2f}%"),
        ("experiments", f"{kpis['experiments']} ({kpis['kept']} kept)"),
        ("keep rate", percent(kpis["keep_rate"])),
        ("crash/timeout rate", percent(kpis["crash_rate"])),
        ("invalid rate", percent(kpis["invalid_rate"])),
        ("experiments / hour", rate(kpis["experiments_per_hour"])),
        ("evaluator hours", f"{kpis['evaluator_hours']:.2f}"),
        ("LLM tokens", f"{kpis['tokens']:,}"),
        ("LLM spend", f"${kpis['cost_usd']:.2f}"),
        ("noise σ", number(noise, 3)),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="value">{escape(value)}</div>'
            f'<div class="name">{escape(name)}</div></div>'
            for name, value in items
        )
        + "</div>"
    )
