"""A run's kept changes as a clean branch: one commit per kept change, or one squashed commit.

Git plumbing only: each change's diff is applied to a temporary index and written as a tree, so
neither the user's checkout, the run branch nor the ledger is touched. The changes are a list, so
a later step may drop some (kept changes that carry no gain) before they are applied.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import git

from .views.html import number
from .views.run import RunView
from .workspace import Workspace, WorkspaceError


@dataclass
class Change:
    """One kept experiment: the commits it went from and to, and what it gained."""

    row: dict
    before: float
    gain: float
    sigmas: float | None

    def message(self, view: RunView) -> str:
        row = self.row
        sigmas = "" if self.sigmas is None else f", {self.sigmas:.1f}σ"
        return (
            f"{row['description'] or 'kept change'}\n\n"
            f"{view.metric}: {number(self.before)} → {number(row['metric'])} (gain {self.gain:.6g}{sigmas})\n"
            f"autoresearch run {view.run['tag']}, experiment {row['number']} ({row['commit'][:10]})\n"
        )


def kept_changes(view: RunView) -> list[Change]:
    return [Change(item["row"], item["before"], item["gain"], item["sigmas"]) for item in view.improvements()]


def squash_message(view: RunView, changes: list[Change]) -> str:
    first, last = view.baseline["metric"], changes[-1].row["metric"]
    lines = [f"autoresearch run {view.run['tag']}: {len(changes)} kept changes", ""]
    lines.append(
        f"{view.metric}: {number(first)} → {number(last)} (gain {view.improvement(first, last):.6g})"
    )
    lines.append("")
    lines += [
        f"- {c.message(view).splitlines()[0]} (experiment {c.row['number']}, gain {c.gain:.6g})"
        for c in changes
    ]
    return "\n".join(lines) + "\n"


def finalize(ws: Workspace, view: RunView, branch: str, squash: bool = False) -> list[tuple[str, str]]:
    """Make ``branch`` from the run's starting commit with its kept changes; returns (sha, subject)."""
    g = ws.repo.git
    ref = f"refs/heads/{branch}"
    try:
        g.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise WorkspaceError(f"{branch!r} is not a valid branch name") from None
    if g.rev_parse("--verify", "--quiet", ref, with_exceptions=False):
        raise WorkspaceError(f"branch {branch} exists already; choose another --branch name")
    if view.baseline is None:
        raise WorkspaceError(f"run {view.run['tag']} has no baseline yet: nothing to finalize")
    changes = kept_changes(view)
    if not changes:
        raise WorkspaceError(f"run {view.run['tag']} has no kept change yet: nothing to finalize")
    head = view.baseline["commit"]
    made: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="autoresearch-finalize-") as scratch:
        index = Path(scratch) / "index"
        with g.custom_environment(GIT_INDEX_FILE=str(index)):
            g.read_tree(head)
            for change in changes:
                patch = Path(scratch) / f"{change.row['number']}.diff"
                diff = g.diff(change.row["parent_commit"], change.row["commit"], "--binary", "--full-index")
                patch.write_text(diff + "\n")
                try:
                    g.apply("--cached", str(patch))
                except git.GitCommandError as error:
                    raise WorkspaceError(
                        f"experiment {change.row['number']}'s change does not apply: {error.stderr.strip()}"
                    ) from None
                if not squash:
                    head = g.commit_tree(g.write_tree(), "-p", head, "-m", change.message(view))
                    made.append((head, change.message(view).splitlines()[0]))
            if squash:
                message = squash_message(view, changes)
                head = g.commit_tree(g.write_tree(), "-p", head, "-m", message)
                made.append((head, message.splitlines()[0]))
    g.update_ref("-m", f"autoresearch finalize {view.run['tag']}", ref, head, "0" * 40)
    return made
