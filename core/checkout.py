"""Checkouts made from commits, never the user's: the draft an agent edits and the clean,
throwaway checkout each measurement runs in. They live under ``.autoresearch/checkouts/``.

A measurement is a function of one commit: ``Checkouts.measurement(commit)`` extracts exactly the
commit's tracked files (``git archive``) into a fresh folder and removes it afterwards, so nothing
untracked, nothing from an earlier run and nothing of the user's working tree takes part. Each
parallel slot of a later scheduler gets its own folder the same way.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .workspace import Workspace

CHECKOUTS = "checkouts"
DRAFT = "draft"


@dataclass(frozen=True)
class Checkout:
    """One measurement's folders: ``root`` (the commit's files) and ``scratch`` (its temp space)."""

    commit: str
    root: Path
    scratch: Path


class Checkouts:
    """The run's checkouts in ``<workspace>/.autoresearch/checkouts/``."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.dir = ws.state_dir / CHECKOUTS
        self._numbers = itertools.count()

    def remove_stale(self) -> None:
        """Remove every checkout a killed harness left behind (and git's record of the draft)."""
        self.ws.remove_worktrees_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    def remove_measurements(self) -> None:
        """Remove the measurements' checkouts; the draft stays until the next run, so that what
        the agent left in it (the command agent's brief and output) can be read."""
        for path in self.dir.glob("measure-*"):
            shutil.rmtree(path, ignore_errors=True)

    def draft(self, commit: str) -> Workspace:
        """The agent's checkout, reset to ``commit`` with nothing untracked left in it but the
        agent's own scratch files (``.autoresearch/``, never part of a change or a measurement)."""
        path = self.dir / DRAFT
        if not (path / ".git").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            self.ws.add_worktree(path, commit)
        draft = Workspace(path)
        draft.reset_clean(commit)
        return draft

    @contextmanager
    def measurement(self, commit: str) -> Iterator[Checkout]:
        """A fresh checkout of exactly ``commit``'s tracked files, removed when the block ends."""
        base = self.dir / f"measure-{os.getpid()}-{next(self._numbers)}"
        checkout = Checkout(commit, base / "tree", base / "scratch")
        try:
            checkout.root.mkdir(parents=True)
            checkout.scratch.mkdir(parents=True)
            self.ws.extract(commit, checkout.root)
            yield checkout
        finally:
            shutil.rmtree(base, ignore_errors=True)
