"""Reading what a coding-agent CLI printed: its final message, token usage and cost.

Understood formats (any command may print them; that is the usage-report contract):
- one JSON object as Claude Code's ``--output-format json`` prints it: ``result`` (the final
  message), ``is_error``, ``usage`` (``input_tokens``, ``output_tokens``,
  ``cache_creation_input_tokens``, ``cache_read_input_tokens``) and ``total_cost_usd``;
- JSON lines as ``codex exec --json`` prints them: ``turn.completed`` events with ``usage``
  (``input_tokens`` including ``cached_input_tokens``, ``output_tokens``) and ``item.completed``
  events whose item is an ``agent_message``;
- anything else is plain text whose last non-empty line is the final message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .usage import Usage


@dataclass
class Report:
    message: str = ""  # the agent's final message
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None  # as the CLI reported it
    error: str | None = None  # the CLI's own report of a failure

    @property
    def has_usage(self) -> bool:
        u = self.usage
        return any((u.input_tokens, u.output_tokens, u.cache_write_tokens, u.cache_read_tokens))


def parse_report(stdout: str) -> Report:
    """The report in a CLI's standard output (see the module docstring for the formats)."""
    whole = _json(stdout.strip())
    if isinstance(whole, dict) and whole.get("type", "result") == "result":
        return _claude(whole)
    events = [e for e in map(_json, stdout.splitlines()) if isinstance(e, dict) and "type" in e]
    if any(str(e["type"]).startswith(("turn.", "item.", "thread.")) for e in events):
        return _codex(events)
    lines = [line for line in stdout.splitlines() if line.strip()]
    return Report(message=lines[-1].strip() if lines else "")


def _claude(result: dict) -> Report:
    usage = result.get("usage") or {}
    report = Report(message=str(result.get("result") or ""))
    report.usage.add(
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        usage.get("cache_creation_input_tokens"),
        usage.get("cache_read_input_tokens"),
    )
    cost = result.get("total_cost_usd")
    report.cost_usd = float(cost) if isinstance(cost, (int, float)) else None
    if result.get("is_error"):
        report.error = f"{result.get('subtype', 'error')}: {report.message}".strip(": ")
    return report


def _codex(events: list[dict]) -> Report:
    report = Report()
    for event in events:
        kind = event["type"]
        if kind == "turn.completed":
            usage = event.get("usage") or {}
            cached = usage.get("cached_input_tokens") or 0
            report.usage.add((usage.get("input_tokens") or 0) - cached, usage.get("output_tokens"), 0, cached)
        elif kind == "item.completed":
            item = event.get("item") or {}
            if item.get("type", item.get("item_type")) in ("agent_message", "assistant_message"):
                report.message = str(item.get("text") or "")
        elif kind in ("turn.failed", "error"):
            failure = event.get("error") or event
            report.error = str(failure.get("message") if isinstance(failure, dict) else failure)
    return report


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None
