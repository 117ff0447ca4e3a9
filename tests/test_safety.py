"""Crash safety: kill -9 at every point resumes cleanly; Ctrl-C; one run per workspace."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from autoresearch.history import History

from conftest import git, invoke, waiting_workspace

# The evaluator starts a grandchild (to check that none is orphaned; it names the workspace in its
# arguments) and waits while a file in the user's workspace exists.
EVALUATE = """\
import os, subprocess, sys, time
import model
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", os.environ["TEST_WORKSPACE"]])
print("evaluating", flush=True)
while os.path.exists(os.path.join(os.environ["TEST_WORKSPACE"], ".slow")):
    time.sleep(0.05)
child.kill()
print("---")
print(f"loss: {model.score():.6f}")
"""

KILL_POINTS = ["propose", "edited", "committed", "measuring", "measured", "resetting"]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    return waiting_workspace(tmp_path, monkeypatch, EVALUATE)


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


def evaluations(root):
    """How many evaluator runs have started (each prints one line to the run's logs)."""
    logs = (root / ".autoresearch" / "logs" / "t").glob("*.log")
    return sum(log.read_text().count("evaluating\n") for log in logs)


def evaluator_pids(root):
    """Every live evaluator (running in one of the run's checkouts) and grandchild of one."""
    checkouts = str(root / ".autoresearch" / "checkouts")
    pids = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if (proc.info["cwd"] or "").startswith(checkouts) or str(root) in (proc.info["cmdline"] or []):
            pids.append(proc.pid)
    return pids


def assert_consistent(root):
    history = ledger(root)
    rows = history.experiments("t")
    assert [r["number"] for r in rows] == list(range(len(rows))), "lost or duplicated rows"
    assert history.pending("t") is None
    assert git(root, "rev-parse", "autoresearch/t") == history.incumbent("t")["commit"]
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD") == "main"  # the user's checkout is theirs
    assert not list((root / ".autoresearch" / "checkouts").glob("measure-*")), "checkouts left behind"
    assert git(root, "worktree", "list").count("\n") == 1, "a stale worktree is still registered"
    orphans = [(p, psutil.Process(p).cmdline(), psutil.Process(p).status()) for p in evaluator_pids(root)]
    assert not orphans, orphans
    return rows


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_each_point_resumes_cleanly(ws, point):
    invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
    proc = start_run(ws, "--max-experiments", "3", env={"AUTORESEARCH_FAULT": point})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, out
    draft_lock = ws / ".git" / "worktrees" / "draft" / "index.lock"
    if point == "edited":
        assert (ws / ".autoresearch" / "checkouts" / "draft").is_dir()
        draft_lock.write_text("")  # what a git killed mid-commit in the draft leaves
    result = invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "2")
    assert result.exit_code == 0, result.output
    rows = assert_consistent(ws)
    assert len(rows) in (4, 5)  # baseline + 1 + (the recovered one) + 2
    assert not draft_lock.exists()


def test_limit_already_met_exits_zero(ws):
    invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
    assert invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "0").exit_code == 0
    assert len(assert_consistent(ws)) == 2


def test_ctrl_c_during_measurement_records_interrupted(ws):
    invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
    before = evaluations(ws)
    (ws / ".slow").write_text("")
    proc = start_run(ws)
    wait_for(lambda: evaluations(ws) > before)  # experiment 2 is being measured
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
