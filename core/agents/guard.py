"""After a CLI agent ran in the workspace: undo its commits and its changes outside the editable
files, using git through GitPython (the workspace root is the repository root)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from git.cmd import Git

from ..agent import AgentError

HARNESS_DIR = ".autoresearch/"  # the harness's own state and the agent's scratch files


@dataclass(frozen=True)
class Snapshot:
    """What the workspace looked like before the agent ran."""

    head: str | None
    untracked: frozenset[str]


def snapshot(root: Path) -> Snapshot:
    head = git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).strip() or None
    return Snapshot(head, frozenset(path for code, path in status(root) if code == "??"))


def changed_paths(root: Path) -> set[str]:
    """Paths that differ from HEAD, staged or not, and untracked files."""
    return {path for _, path in status(root)}


def status(root: Path) -> list[tuple[str, str]]:
    """(two-letter status, path) per change; a rename's source is an entry of its own."""
    fields = iter(git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all").split("\0"))
    entries = []
    for entry in fields:
        if entry:
            entries.append((entry[:2], entry[3:]))
            if entry[0] in "RC":
                entries.append((entry[:2], next(fields)))
    return entries


def restore(root: Path, before: Snapshot, editable: list[str]) -> tuple[list[str], bool]:
    """Undo commits made since ``before`` (keeping their changes in the working tree), then every
    change outside ``editable``. Returns the reverted paths and whether commits were undone."""
    undone = False
    if before.head and git(root, "rev-parse", "HEAD").strip() != before.head:
        git(root, "reset", "-q", before.head)
        undone = True
    allowed = set(editable)
    outside = sorted(
        path
        for path in changed_paths(root) - before.untracked
        if path not in allowed and not path.startswith(HARNESS_DIR)
    )
    if not outside:
        return [], undone
    in_head = set()
    if before.head:
        in_head = set(git(root, "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", *outside).split("\0"))
    tracked = [path for path in outside if path in in_head]
    new = [path for path in outside if path not in in_head]
    if tracked:
        git(root, "checkout", "-q", "HEAD", "--", *tracked)
    if new:
        git(root, "rm", "-q", "--cached", "--ignore-unmatch", "--", *new)
        for path in new:
            (root / path).unlink(missing_ok=True)
    return outside, undone


def git(root: Path, *args: str, check: bool = True) -> str:
    # Literal pathspecs: a file named "a*.py" must not revert every matching file.
    status, out, err = Git(root).execute(
        ["git", "--literal-pathspecs", *args], with_extended_output=True, with_exceptions=False
    )
    if check and status != 0:
        raise AgentError(f"git {' '.join(args)} failed: {err.strip()}")
    return out
