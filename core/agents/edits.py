"""SEARCH/REPLACE edit blocks: the edit format for models without reliable tool use.

A block is a line naming the file, then::

    <<<<<<< SEARCH
    the old lines, exactly as in the file
    =======
    the new lines
    >>>>>>> REPLACE

Markdown fences around the block are ignored. An empty SEARCH creates a new file. Each SEARCH must
match exactly once; blocks for files that are not editable are refused.
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


def apply_edit_blocks(blocks: list[EditBlock], files: EditableFiles) -> list[str]:
    """Apply each block that can be applied; returns one error line per block that could not."""
    errors = []
    for number, block in enumerate(blocks, 1):
        try:
            if block.path is None:
                raise EditError("no file path on the line before <<<<<<< SEARCH")
            if block.search:
                files.replace(block.path, block.search, block.replace)
            else:
                files.create(block.path, block.replace)
        except EditError as error:
            errors.append(f"block {number} ({block.path or 'no path'}): {error}")
    return errors


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
