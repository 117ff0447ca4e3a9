"""bench/gpu_check.sh end to end, shrunk to run on this CPU (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_gpu_check_runs_end_to_end_shrunk_to_the_cpu(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--tiny", "--no-install", "--python", sys.executable],
        capture_output=True, text=True, timeout=900, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "inside the sandbox    probe False 0 " in result.stdout  # the evaluators' sandbox ran it
    report = dict(line.split(None, 1) for line in result.stdout.split("== gpu_check\n", 1)[1].splitlines())
    assert int(report["steps"]) > 11 and float(report["val_bpb"]) > 0
    assert report["mfu_percent"].startswith("n/a")  # no known peak on a CPU
    for key in ("startup_seconds", "eval_seconds", "total_seconds"):
        assert report[key].endswith("ok)"), report[key]


def test_gpu_check_needs_a_wheel_folder_to_install(tmp_path):
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    assert result.returncode == 2 and "--wheels DIR is needed" in result.stderr
