"""Checks on an agent's change before it is committed: scope, size, repeats, syntax, seeds."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .target import Target
from .workspace import Workspace, diff_sha, matches

MAX_DIFF_BYTES = 1_000_000
RESEED = re.compile(
    r"^\+.*(manual_seed\s*\(|random\.seed\s*\(|np\.random\.seed\s*\(|default_rng\s*\(|"
    r"AUTORESEARCH_SEED|\bSEED\s*=)",
    re.MULTILINE,
)


@dataclass
class Change:
    diff: str
    paths: list[str]
    added: int
    removed: int
    binary: bool
    tree: str | None  # the git tree a commit of the change would have; None when nothing changed

    @property
    def sha(self) -> str:
        return diff_sha(self.diff)


def read_change(ws: Workspace) -> Change:
    paths = ws.changed_paths()
    return Change(ws.diff(), paths, *ws.numstat(), tree=ws.tree_with(paths) if paths else None)


def problem(ws: Workspace, target: Target, change: Change, earlier: int | None) -> str | None:
    """Why the change must be rejected (status ``invalid``), or None when it may be measured.

    ``earlier`` is the number of an earlier experiment that measured exactly the code this change
    leads to (the same git tree), if any: a different diff back to measured code is a repeat too.
    """
    if not change.paths:
        return "empty change: no editable file was modified"
    protected = [p for p in change.paths if matches(p, target.protected)]
    if protected:
        return f"alters protected file {protected[0]}"
    outside = [p for p in change.paths if not matches(p, target.editable)]
    if outside:
        return f"touches {outside[0]}, which is outside the editable files"
    if change.binary:
        return "binary change to an editable file"
    if len(change.diff) > MAX_DIFF_BYTES:
        return f"change too large ({len(change.diff)} bytes of diff > {MAX_DIFF_BYTES})"
    if earlier is not None:
        return f"repeats experiment {earlier} exactly"
    if target.takes_seed and RESEED.search(change.diff):
        return "changes the random seed; the harness sets it (AUTORESEARCH_SEED)"
    for path in change.paths:
        if path.endswith(".py") and (ws.root / path).is_file():
            source = (ws.root / path).read_text(errors="replace")
            try:
                compile(source, path, "exec")
            except SyntaxError as error:
                return f"syntax error in {path} line {error.lineno}: {error.msg}"
    return None
