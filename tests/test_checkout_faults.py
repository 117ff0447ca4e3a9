"""Faults around the run's checkouts (issue 11): deleted by hand mid-run, a full disk while one is
made. Each is a recorded status or one line, and nothing is lost."""

import shutil
import subprocess
import sys

import pytest
from test_safety import EVALUATE, assert_consistent, evaluations, ledger, start_run, wait_for

from conftest import command_workspace, invoke, waiting_workspace

STRICT = ("--accept", "strict", "--baseline-runs", "1")


@pytest.mark.parametrize("slots", ["1", "2"])
def test_checkouts_deleted_by_hand_mid_run_lose_nothing(tmp_path, monkeypatch, slots):
    ws = waiting_workspace(tmp_path, monkeypatch, EVALUATE)
    assert invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "0", *STRICT).exit_code == 0
    (ws / ".slow").write_text("")
    proc = start_run(ws, "--max-experiments", "3", "--slots", slots, *STRICT)
    wait_for(lambda: evaluations(ws) >= 2, seconds=90)  # an experiment is being measured
    checkouts = ws / ".autoresearch" / "checkouts"
    while checkouts.exists():  # every draft and the measurement's checkout (the run may be writing)
        shutil.rmtree(checkouts, ignore_errors=True)
    (ws / ".slow").unlink()
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    rows = assert_consistent(ws)
    assert len(rows) == 4, out  # the baseline and 3 experiments, each recorded
    assert all(r["status"] in ("keep", "discard", "crash", "invalid") for r in rows[1:]), rows
    assert sum(r["status"] in ("keep", "discard") for r in rows[1:]) >= 2, out  # the drafts came back


def test_a_full_disk_while_making_a_checkout_stops_with_one_line_and_resumes(tmp_path, monkeypatch):
    # A tracked 96 KiB file: the draft fits in the 160 KiB device, a measurement's checkout does not.
    pad = "x" * (96 * 1024)
    ws = command_workspace(tmp_path / "ws", "import model\nprint('---')\nprint(f'loss: {model.score()}')\n",
                           **{"pad.txt": pad})  # fmt: skip
    monkeypatch.chdir(ws)
    checkouts = ws / ".autoresearch" / "checkouts"
    checkouts.mkdir(parents=True)
    run = [sys.executable, "-m", "autoresearch.cli", "run", "--agent", "mutate", "--tag", "t", *STRICT]
    device = ["--size", str(160 * 1024), "--tmpfs", str(checkouts)]
    full = [
        "bwrap",
        "--bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        *device,
        "--",
        *run,
        "--max-experiments",
        "1",
    ]
    proc = subprocess.run(full, cwd=ws, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no space left on the device to make a checkout" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert ledger(ws).experiments("t") == []  # nothing measured, nothing recorded as measured
    result = invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1", *STRICT)
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in assert_consistent(ws)][0] == "baseline"
    assert len(ledger(ws).experiments("t")) == 2
