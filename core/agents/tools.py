"""The file tools an API agent offers its model, and their execution on the editable files."""

from __future__ import annotations

from pathlib import Path

from ..measure import log_tail
from .files import EditableFiles, EditError

VIEW_LINES = 2000  # most lines one view_file returns
LOG_LINES = 400  # most lines one read_log returns

SUBMIT = "submit"
TOOLS = [
    {
        "name": "view_file",
        "description": (
            "Show an editable or protected file with line numbers (the numbers are not part of "
            "the file). Optionally a 1-based, inclusive line range."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path relative to the workspace."},
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1},
            },
            "required": ["path"],
        },
    },
    {
        "name": "replace_in_file",
        "description": (
            "Replace old_text by new_text in an editable file. old_text must occur exactly once: "
            "copy it exactly, with enough surrounding lines to be unique."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_text": {"type": "string"},
                "new_text": {"type": "string"},
            },
            "required": ["path", "old_text", "new_text"],
        },
    },
    {
        "name": "write_file",
        "description": "Create or overwrite an editable file with the full content given.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "read_log",
        "description": "Show the last lines of the previous experiment's log.",
        "input_schema": {
            "type": "object",
            "properties": {"lines": {"type": "integer", "minimum": 1, "maximum": LOG_LINES}},
        },
    },
    {
        "name": SUBMIT,
        "description": "Finish: the change is complete. Give a one-line description of the idea.",
        "input_schema": {
            "type": "object",
            "properties": {"description": {"type": "string"}},
            "required": ["description"],
        },
    },
]


class ToolInputError(ValueError):
    """The model's arguments don't fit the tool's schema."""


class ToolBox:
    """Runs the file tools (everything but ``submit``) and turns every failure into text."""

    def __init__(self, files: EditableFiles, last_log: Path | None):
        self.files = files
        self.last_log = last_log
        self.handlers = {
            "view_file": self._view_file,
            "replace_in_file": self._replace_in_file,
            "write_file": self._write_file,
            "read_log": self._read_log,
        }

    def run(self, name: str, args: object) -> tuple[str, bool]:
        """The tool's result text and whether it is an error."""
        handler = self.handlers.get(name)
        if handler is None:
            return f"unknown tool {name!r}", True
        if not isinstance(args, dict):
            return f"{name}: the input must be a JSON object", True
        try:
            return handler(args), False
        except (EditError, ToolInputError) as error:
            return f"{name}: {error}", True

    def _view_file(self, args: dict) -> str:
        text = self.files.read(string(args, "path"))
        lines = text.splitlines()
        start = integer(args, "start_line", 1)
        end = min(integer(args, "end_line", len(lines)), start + VIEW_LINES - 1, len(lines))
        shown = "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(start, end + 1))
        more = f"\n(lines {end + 1}-{len(lines)} not shown)" if end < len(lines) else ""
        return (shown or "(no lines in that range)") + more

    def _replace_in_file(self, args: dict) -> str:
        path = self.files.replace(string(args, "path"), string(args, "old_text"), string(args, "new_text"))
        return f"replaced 1 occurrence in {path}"

    def _write_file(self, args: dict) -> str:
        content = string(args, "content")
        path = self.files.write(string(args, "path"), content)
        return f"wrote {path} ({len(content.splitlines())} lines)"

    def _read_log(self, args: dict) -> str:
        lines = min(integer(args, "lines", 80), LOG_LINES)
        return log_tail(self.last_log, lines) or "(there is no log of a previous experiment)"


def string(args: dict, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise ToolInputError(f"'{key}' must be a string")
    return value


def integer(args: dict, key: str, default: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ToolInputError(f"'{key}' must be a positive integer")
    return value
