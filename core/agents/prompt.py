"""Prompt pieces shared by the LLM agents: the harness rules, the brief's split, file context."""

from __future__ import annotations

from ..brief import VOLATILE_MARKER
from .files import EditableFiles, EditError

CONTEXT_CHARS = 60_000  # file context included in a prompt, all files together

RULES = """\
You are the proposer in an automated research loop. Each call, you make ONE change to the editable
files; the harness then runs the experiment, measures the metric, and keeps the change only if the
metric improves (otherwise it is reverted). Nobody reads your questions: never ask, decide.
- Change only the editable files. Protected files define the evaluation and are read-only.
- Make one focused, self-contained idea per call, so that its effect can be measured.
- You cannot run code; think the change through so that it runs on the first try.
- Describe the idea in one short line (what and why), e.g. "halve the learning rate: loss spikes".
"""


def split_brief(text: str) -> tuple[str, str]:
    """The brief's stable part (cacheable) and its volatile part (history, last failure)."""
    stable, marker, volatile = text.partition(VOLATILE_MARKER)
    return (stable.rstrip(), volatile.strip()) if marker else (text.rstrip(), "")


def file_context(files: EditableFiles, paths: list[str], brief_text: str, limit: int = CONTEXT_CHARS) -> str:
    """``paths`` as fenced text, skipping any the brief already shows verbatim, within ``limit``."""
    parts = []
    for path in paths:
        try:
            text = files.read(path)
        except EditError:
            continue  # missing, binary or not readable: nothing to show
        if text.strip() in brief_text:
            continue
        if len(text) > limit:
            parts.append(f"### {path}\n({len(text)} characters: too long to show here)")
            continue
        limit -= len(text)
        parts.append(f"### {path}\n```\n{text.rstrip()}\n```")
    return "\n\n".join(parts)


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of a model's message, whitespace collapsed, for a description."""
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""
