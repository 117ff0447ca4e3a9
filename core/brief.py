"""Rendering the brief an agent gets: a program template filled with the run's state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import statuses
from .measure import log_tail
from .target import Target
from .workspace import matches

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
VOLATILE_MARKER = "<!-- volatile -->"  # agents may cache everything above it


@dataclass
class BriefSettings:
    history: int = 15  # experiments shown in the table
    discarded: int = 10  # discarded ideas listed
    log_lines: int = 30  # lines of the last failure's log
    max_file_chars: int = 60_000  # an editable file larger than this is cut


def program_text(root: Path, target: Target) -> str:
    """The workspace's ``program.md`` (re-read every time, so a human can steer) or the template."""
    own = root / "program.md"
    if own.is_file():
        return own.read_text()
    return resources.files("autoresearch.program_templates").joinpath(target.template).read_text()


def editable_paths(target: Target, tracked: list[str]) -> list[str]:
    return [path for path in tracked if matches(path, target.editable)]


def protected_paths(target: Target, tracked: list[str]) -> list[str]:
    return [path for path in tracked if matches(path, target.protected)]


def _fence(path: str, text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text) - limit} more characters cut)"
    return f"### {path}\n```\n{text}\n```"


def _format(value) -> str:
    return "—" if value is None else f"{value:.6g}"


def history_table(rows: list[dict], metric: str, incumbent_metric: float | None) -> str:
    if not rows:
        return "(no experiments yet)"
    lines = [f"| # | status | {metric} | delta | description |", "|---|---|---|---|---|"]
    for row in rows:
        delta = None
        if row["metric"] is not None and incumbent_metric is not None:
            delta = row["metric"] - incumbent_metric
        description = (row["description"] or "").replace("|", "/").replace("\n", " ")[:160]
        reason = f" ({row['reason']})" if row["status"] in statuses.SHOWN_FAILURES and row["reason"] else ""
        lines.append(
            f"| {row['number']} | {row['status']}{reason[:80]} | {_format(row['metric'])} | "
            f"{'' if delta is None else f'{delta:+.4g}'} | {description} |"
        )
    return "\n".join(lines)


def render(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def brief_values(
    root: Path,
    target: Target,
    tracked: list[str],
    recent: list[dict],
    discarded: list[dict],
    incumbent: dict | None,
    last_failure: dict | None,
    budget: float,
    noise: float | None,
    settings: BriefSettings,
) -> dict[str, str]:
    """Every placeholder's text; bounded by ``settings`` however long the run is."""
    editable = editable_paths(target, tracked)
    files = [
        _fence(p, (root / p).read_text(errors="replace"), settings.max_file_chars)
        for p in editable
        if (root / p).is_file()
    ]
    incumbent_metric = incumbent["metric"] if incumbent else None
    failure = "(none)"
    if last_failure:
        log_path = last_failure.get("log_path")  # relative to the workspace
        tail = log_tail(log_path and root / log_path, settings.log_lines) or "(no log)"
        failure = (
            f"Experiment {last_failure['number']} ({last_failure['status']}: "
            f"{last_failure['reason']}). Log tail:\n```\n{tail}\n```"
        )
    return {
        "objective": target.objective,
        "target": target.name,
        "metric": target.metric.name,
        "direction": target.metric.direction,
        "budget": f"{budget:g} seconds",
        "noise": "unknown" if noise is None else f"±{noise:.3g} (one standard deviation)",
        "editable_files": "\n\n".join(files) or "(none)",
        "protected_files": "\n".join(f"- {p}" for p in protected_paths(target, tracked)) or "(none)",
        "incumbent": (
            "none yet"
            if incumbent is None
            else f"{target.metric.name} = {_format(incumbent_metric)} (experiment "
            f"{incumbent['number']}, commit {(incumbent['commit'] or '')[:7]})"
        ),
        "history": history_table(recent, target.metric.name, incumbent_metric),
        "discarded": "\n".join(f"- {row['description']} ({_format(row['metric'])})" for row in discarded)
        or "(none)",
        "last_failure": failure,
    }
