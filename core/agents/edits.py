"""SEARCH/REPLACE edit blocks: the edit format for models without reliable tool use.

A block is a line naming the file, then::

    <<<<<<< SEARCH
    the old lines, exactly as in the file
    =======
    the new lines
    >>>>>>> REPLACE

Markdown fences around the block are ignored. An empty SEARCH creates a new file. Each SEARCH must
match exactly once; blocks for files that are not editable are refused. Models copy imperfectly,
so a SEARCH that does not occur is still applied where one reading of it is unambiguous: without
its final newline it occurs once (a part of a line), or exactly one run of lines equals it up to
whitespace (the REPLACE is then re-indented by the same amount).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .files import EditableFiles, EditError

SEARCH = re.compile(r"^<{5,9} SEARCH\s*$")
DIVIDER = re.compile(r"^={5,9}\s*$")
REPLACE = re.compile(r"^>{5,9} REPLACE\s*$")

FORMAT_HELP = """\
Reply with SEARCH/REPLACE blocks, one per change. Each block is a line with the file path, then:
<<<<<<< SEARCH
the existing lines to change, copied exactly (whitespace included), enough to match only once
=======
the new lines
>>>>>>> REPLACE
An empty SEARCH section creates a new file. Only editable files may be changed."""


@dataclass
class EditBlock:
    path: str | None  # None when no file name precedes the block
    search: str
    replace: str


def parse_edit_blocks(text: str) -> list[EditBlock]:
    """Every complete block in ``text``, in order; an unterminated last block is dropped."""
    lines = text.splitlines(keepends=True)
    blocks: list[EditBlock] = []
    i = 0
    while i < len(lines):
        if not SEARCH.match(lines[i].strip()):
            i += 1
            continue
        divider = _next(lines, i + 1, DIVIDER)
        end = _next(lines, divider + 1, REPLACE) if divider is not None else None
        if end is None:
            break
        path = _path_before(lines, i) or (blocks[-1].path if blocks else None)
        search, replace = "".join(lines[i + 1 : divider]), "".join(lines[divider + 1 : end])
        blocks.append(EditBlock(path, search, replace))
        i = end + 1
    return blocks


def apply_edit_blocks(blocks: list[EditBlock], files: EditableFiles) -> list[tuple[EditBlock, str]]:
    """Apply each block that can be applied; returns each block that could not, with an error line."""
    failed = []
    for number, block in enumerate(blocks, 1):
        try:
            if block.path is None:
                raise EditError("no file path on the line before <<<<<<< SEARCH")
            if not block.search:
                files.create(block.path, block.replace)
                continue
            text = files.read(block.path)
            found = (block.search, block.replace) if block.search in text else loose_match(text, block)
            files.replace(block.path, *(found or (block.search, block.replace)))  # else it says why
        except EditError as error:
            failed.append((block, f"block {number} ({block.path or 'no path'}): {error}"))
    return failed


def loose_match(text: str, block: EditBlock) -> tuple[str, str] | None:
    """The file's own text for a SEARCH that does not occur exactly, and its REPLACE adjusted to it;
    None unless exactly one reading fits."""
    search, replace = block.search, block.replace
    inner = search.rstrip("\r\n")
    if inner and text.count(inner) == 1:  # a part of one line: the newline was the model's
        ending = search[len(inner) :]
        return inner, replace[: -len(ending)] if replace.endswith(ending) else replace
    lines, wanted = text.splitlines(keepends=True), [_squeeze(line) for line in search.splitlines()]
    starts = [
        i
        for i in range(len(lines) - len(wanted) + 1)
        if [_squeeze(line) for line in lines[i : i + len(wanted)]] == wanted
    ]
    if len(starts) != 1 or not any(wanted):
        return None
    found = lines[starts[0] : starts[0] + len(wanted)]
    old = "".join(found)
    new = _reindent(replace, _indent(search.splitlines()), _indent(found))
    if old.endswith("\n") and new and not new.endswith("\n"):
        new += "\n"
    return old, new.replace("\n", "\r\n") if "\r\n" in old else new


def _squeeze(line: str) -> str:
    return " ".join(line.split())


def _indent(lines: list[str]) -> str:
    """The leading whitespace of the first line with text."""
    first = next((line for line in lines if line.strip()), "")
    return first[: len(first) - len(first.lstrip())]


def _reindent(text: str, model: str, actual: str) -> str:
    """Shift ``text``'s lines from the model's indentation to the file's."""
    if model == actual:
        return text
    lines = text.splitlines(keepends=True)
    if actual.startswith(model):
        return "".join(actual[len(model) :] + line if line.strip() else line for line in lines)
    if model.startswith(actual):
        cut = len(model) - len(actual)
        return "".join(line[cut:] if line.startswith(model[:cut]) else line for line in lines)
    return text


def _next(lines: list[str], start: int, marker: re.Pattern) -> int | None:
    for j in range(start, len(lines)):
        if marker.match(lines[j].strip()):
            return j
    return None


def _path_before(lines: list[str], i: int) -> str | None:
    """The file name on the nearest meaningful line above a block, ignoring fences."""
    for line in reversed(lines[:i]):
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            continue
        if REPLACE.match(stripped):
            return None  # the previous block ends here: no name of our own
        name = stripped.split()[-1].strip("`*:'\"")
        return name or None
    return None
