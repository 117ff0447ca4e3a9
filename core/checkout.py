"""Checkouts made from commits, never the user's: the draft an agent edits and the clean,
throwaway checkout each measurement runs in. They live under ``.autoresearch/checkouts/``.

A measurement is a function of one commit: ``Checkouts.measurement(commit)`` extracts exactly the
commit's tracked files (``git archive``) into a fresh folder and removes it afterwards, so nothing
untracked, nothing from an earlier run and nothing of the user's working tree takes part. Each
measurement of the scheduler's parallel slots gets its own folder the same way.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git

from .workspace import Workspace

CHECKOUTS = "checkouts"
DRAFT = "draft"


class CheckoutError(Exception):
    """A checkout could not be made (a full disk, ...): the run stops and resumes later."""


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

    def draft(self, commit: str, name: str = DRAFT) -> Workspace:
        """The agent's checkout, reset to ``commit`` with nothing untracked left in it but the
        agent's own scratch files (``.autoresearch/``, never part of a change or a measurement).
        With slots, every experiment in flight has a draft of its own (``draft-1``, ...)."""
        path = self.dir / name
        if not (path / ".git").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            self.ws.add_worktree(path, commit)
        draft = Workspace(path)
        draft.reset_clean(commit)
        return draft

    def reset(self, draft: Workspace, commit: str) -> None:
        """Reset ``draft`` to ``commit``; a draft deleted by hand mid-run is made again in place."""
        if not (draft.root / ".git").exists():
            draft.close()
            with _making(draft.root):
                self.dir.mkdir(parents=True, exist_ok=True)
                self.ws.add_worktree(draft.root, commit)
        draft.reset_clean(commit)

    def remove_draft(self, draft: Workspace) -> None:
        """Remove a slot's draft and git's record of it (the run's own ``draft`` stays)."""
        draft.close()
        self.ws.remove_worktrees_under(draft.root)
        shutil.rmtree(draft.root, ignore_errors=True)

    @contextmanager
    def measurement(self, commit: str) -> Iterator[Checkout]:
        """A fresh checkout of exactly ``commit``'s tracked files, removed when the block ends."""
        base = self.dir / f"measure-{os.getpid()}-{next(self._numbers)}"
        checkout = Checkout(commit, base / "tree", base / "scratch")
        try:
            with _making(base):
                checkout.root.mkdir(parents=True)
                checkout.scratch.mkdir(parents=True)
                self.ws.extract(commit, checkout.root)
            yield checkout
        finally:
            shutil.rmtree(base, ignore_errors=True)


@contextmanager
def _making(path: Path) -> Iterator[None]:
    """Turn a full disk (or quota) while writing a checkout into one line that says what to do."""
    try:
        yield
    except (OSError, git.GitCommandError) as error:
        full = getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
            text in str(error) for text in ("No space left", "Disk quota exceeded")
        )
        if not full:
            raise
        raise CheckoutError(
            f"no space left on the device to make a checkout in {path.parent}; free some space "
            "and run again to resume"
        ) from None
