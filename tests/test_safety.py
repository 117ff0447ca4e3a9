"""Crash safety: kill -9 at every point resumes cleanly; Ctrl-C; one run per workspace."""

import os
import signal
import subprocess
import sys
import time

import pytest

from autoresearch.history import History
from autoresearch.measure import pid_alive

from conftest import command_workspace, git, invoke

# The evaluator starts a grandchild (to check that none is orphaned) and waits while a file exists.
EVALUATE = """\
import os, subprocess, sys, time
import model
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(".pids", "a") as f:
    f.write(f"{os.getpid()} {child.pid}\\n")
while os.path.exists(".slow"):
    time.sleep(0.05)
child.kill()
print("---")
print(f"loss: {model.score():.6f}")
"""

KILL_POINTS = ["propose", "edited", "committed", "measuring", "measured", "resetting"]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    root = command_workspace(tmp_path / "ws", EVALUATE, budget=60, **{".gitignore": ".pids\n.slow\n"})
    monkeypatch.chdir(root)
    return root


def start_run(root, *args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "run", "--agent", "mutate", "--tag", "t", *args],
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(predicate, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def ledger(root):
    return History(root / ".autoresearch" / "history.db")


def evaluator_pids(root):
    path = root / ".pids"
    return [int(p) for line in path.read_text().splitlines() for p in line.split()] if path.exists() else []


def assert_consistent(root):
    history = ledger(root)
    rows = history.experiments("t")
    assert [r["number"] for r in rows] == list(range(len(rows))), "lost or duplicated rows"
    assert history.pending("t") is None
    assert git(root, "rev-parse", "HEAD") == history.incumbent("t")["commit"]
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD") == "autoresearch/t"
    assert not any(pid_alive(pid) for pid in evaluator_pids(root)), "orphaned evaluator"
    return rows


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_each_point_resumes_cleanly(ws, point):
    invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
    proc = start_run(ws, "--max-experiments", "3", env={"AUTORESEARCH_FAULT": point})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, out
    if point == "resetting":
        (ws / ".git" / "index.lock").write_text("")  # what a git killed mid-reset leaves
    result = invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "2")
    assert result.exit_code == 0, result.output
    rows = assert_consistent(ws)
    assert len(rows) in (4, 5)  # baseline + 1 + (the recovered one) + 2
    assert not (ws / ".git" / "index.lock").exists()


def test_limit_already_met_exits_zero(ws):
    invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
    assert invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "0").exit_code == 0
    assert len(assert_consistent(ws)) == 2


def test_ctrl_c_during_measurement_records_interrupted(ws):
    invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
    before = len(evaluator_pids(ws))
    (ws / ".slow").write_text("")
    proc = start_run(ws)
    wait_for(lambda: len(evaluator_pids(ws)) > before)  # experiment 2 is being measured
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    rows = assert_consistent(ws)
    assert rows[-1]["status"] == "interrupted"
    assert "interrupted by the user" in out


def test_second_run_is_refused_and_readers_do_not_wait(ws):
    invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
    (ws / ".slow").write_text("")
    proc = start_run(ws)
    try:
        wait_for(lambda: (ws / ".autoresearch" / "run.lock").exists())
        second = invoke("run", "--agent", "mutate", "--tag", "t")
        assert second.exit_code == 1
        assert f"another 'autoresearch run' (pid {proc.pid})" in second.output
        for args in (["log"], ["show", "0"], ["best"], ["sql", "select 1"]):
            started = time.monotonic()
            assert invoke(*args).exit_code == 0
            # The run holds its lock until Ctrl-C and the ledger's busy timeout is 30 s: a reader
            # that waited for either would take that long; a busy machine takes a few seconds.
            assert time.monotonic() - started < 20
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        (ws / ".slow").unlink()


def test_stale_lock_is_taken_over(ws):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (ws / ".autoresearch").mkdir(exist_ok=True)
    (ws / ".autoresearch" / "run.lock").write_text(f"{dead.pid} {os.uname().nodename}\n")
    assert invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1").exit_code == 0
    assert not (ws / ".autoresearch" / "run.lock").exists()
