"""Shared fixtures: isolated home and cache, toy workspaces, a scripted agent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch import Agent, AgentExhausted, Brief, Proposal, hookimpl, registry
from autoresearch.cli import cli

EVALUATE = """\
import os, sys, time
import model
time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
print("training... done")
print("---")
print(f"loss:        {model.score():.6f}")
print(f"memory_gb:   0.5")
"""

MODEL = """\
X = 3.0
Y = 10


def score():
    return (X - 1.7) ** 2 + abs(Y - 7) * 0.1
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """Never touch the user's home, cache or keys; commit with a fixed identity."""
    home = tmp_path_factory.mktemp("home")
    # The user's own settings (.ci/run exports AUTORESEARCH_MAX_EXPERIMENTS for the README's run).
    for key in [key for key in os.environ if key.startswith("AUTORESEARCH_")]:
        monkeypatch.delenv(key)
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(home / "cache"))
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "test@example.com")
    # One torch thread in the evaluators: on a busy 2-core machine two threads wait on each other
    # at every barrier, and a tiny model's 10 ms step took 1-4 s, past a short budget's overshoot.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    registry.get_manager.cache_clear()
    yield
    registry.get_manager.cache_clear()


def wait_until(condition, timeout: float, what: str):
    """Poll ``condition`` until it returns something true (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    git(root, "add", ".")
    git(root, "commit", "-qm", "initial")
    return root


def command_workspace(root: Path, evaluate: str, budget: int = 20, **extra_files: str) -> Path:
    """A git repo with the toy model and ``evaluate``, made a command-target workspace."""
    make_repo(root, {"model.py": MODEL, "evaluate.py": evaluate, **extra_files})
    result = CliRunner().invoke(
        cli,
        [
            "init",
            "command",
            "--edit",
            "model.py",
            "--protect",
            "evaluate.py",
            "--metric",
            "loss",
            "--run",
            f"{sys.executable} evaluate.py",
            "--budget",
            str(budget),
            str(root),
        ],
    )
    assert result.exit_code == 0, result.output
    return root


def waiting_workspace(tmp_path: Path, monkeypatch, evaluate: str) -> Path:
    """A command workspace, as the current directory, whose evaluator can wait while ``.slow``
    exists: it finds the workspace (read-only from its own checkout) in ``$TEST_WORKSPACE``."""
    root = command_workspace(tmp_path / "ws", evaluate, budget=60, **{".gitignore": ".slow\n"})
    monkeypatch.chdir(root)
    monkeypatch.setenv("TEST_WORKSPACE", str(root))
    return root


@contextmanager
def plugin_registered(plugin, name: str):
    pm = registry.get_manager()
    pm.register(plugin, name)
    try:
        yield
    finally:
        pm.unregister(plugin)


def configure(root: Path, lines: str) -> None:
    """Append ``lines`` to the workspace's autoresearch.yaml and commit it."""
    config = root / "autoresearch.yaml"
    config.write_text(config.read_text() + lines)
    git(root, "commit", "-qam", f"configure {lines.strip()}")


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    """The toy command-target workspace, as the current directory."""
    root = command_workspace(tmp_path / "toy", EVALUATE)
    monkeypatch.chdir(root)
    return root


def invoke(*args: str, **kwargs):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **kwargs)


class ScriptedAgent(Agent):
    """Plays a queue of edits: each item maps paths to new text (or is a callable, or an exception)."""

    name = "scripted"
    description = "Test agent with a queue of edits."
    queue: list = []

    def propose(self, brief: Brief) -> Proposal:
        if not self.queue:
            raise AgentExhausted("script exhausted")
        step = self.queue.pop(0)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(brief)
        description = step.pop("_description", "scripted edit")
        for path, text in step.items():
            (brief.root / path).write_text(text)
        return Proposal(description=description, input_tokens=10, output_tokens=5, cost_usd=0.01)


class ScriptedPlugin:
    @hookimpl
    def register_agents(self, register):
        register(ScriptedAgent)


@pytest.fixture
def scripted():
    """Registers ScriptedAgent; returns its queue to fill."""
    ScriptedAgent.queue = []
    with plugin_registered(ScriptedPlugin(), "scripted"):
        yield ScriptedAgent.queue
