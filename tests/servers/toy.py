"""A toy workspace for agent tests: a git repo, editable train.py, protected prepare.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

from autoresearch.agent import Brief
from autoresearch.agents.prompt import VOLATILE_MARKER

TRAIN = """\
LEARNING_RATE = 0.1  # step size
STEPS = 100          # optimisation steps


def main():
    loss = 1.0
    for _ in range(STEPS):
        loss *= 1 - LEARNING_RATE / 10
    print("---")
    print(f"loss: {loss:.6f}")


if __name__ == "__main__":
    main()
"""
PREPARE = "# the evaluation: never changes\nDATA = 'fixed'\n"


def make_repo(root: Path) -> Path:
    """A committed git repo with train.py (editable) and prepare.py (protected)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN)
    (root / "prepare.py").write_text(PREPARE)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")
    return root


def git(root: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    done = subprocess.run(["git", *identity, *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout


def make_brief(root: Path, volatile: str = "Last failure: none.", last_log: Path | None = None) -> Brief:
    text = (
        "# Objective\nLower the loss printed by train.py.\n\n## train.py\n```\n"
        + TRAIN
        + "```\n"
        + VOLATILE_MARKER
        + "\n"
        + volatile
    )
    return Brief(
        text=text,
        root=root,
        editable=["train.py"],
        protected=["prepare.py"],
        last_log=last_log,
    )
