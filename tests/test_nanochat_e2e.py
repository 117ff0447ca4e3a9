"""nanochat_bpb end to end on the CPU, and the benchmark scripts' smoke tests (slow)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoresearch.measure import evaluate_tree
from autoresearch.plugins.nanochat_bpb import NanochatBpb

from nanochat_support import write_corpus

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTORESEARCH_CLIMBMIX_URL", "http://127.0.0.1:9")


def uniform_bpb(root: Path) -> float:
    """val_bpb of a model that knows nothing (uniform over the vocabulary), on this eval set."""
    sys.path.insert(0, str(root))
    try:
        import prepare
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("prepare", None)
    rows = np.load(prepare.val_rows_path())
    token_bytes = prepare.get_token_bytes().numpy()
    counted = token_bytes[rows[:, 1:]]
    return (counted > 0).sum() * math.log2(len(token_bytes)) / counted.sum()


def test_cpu_preset_learns_in_a_short_budget(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    data = write_corpus(tmp_path / "corpus")
    config = NanochatBpb.scaffold(root, {"preset": "cpu", "data": str(data), "budget": 30})
    target = NanochatBpb.from_config(config, root)
    lines = []
    target.prepare(root, echo=lines.append)
    assert any("tokenizer: vocab 4096" in line for line in lines) and lines[-1] == "ready"

    measurement, _ = evaluate_tree(target, root, tmp_path / "run.log", 30, 1)
    assert measurement.ok, (measurement.reason, (tmp_path / "run.log").read_text()[-3000:])
    assert math.isfinite(measurement.metric)
    assert measurement.metric < 0.85 * uniform_bpb(root)
    for key in (
        "training_seconds",
        "num_steps",
        "total_tokens_M",
        "num_params_M",
        "peak_rss_mb",
        "startup_seconds",
        "depth",
    ):
        assert key in measurement.extras


def run_bench(*args: str) -> dict:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    block = result.stdout.rsplit("---", 1)[1]
    return dict(line.split(":", 1) for line in block.strip().splitlines())


def test_gpu_benchmark_script_runs_on_cpu_with_tiny_settings():
    result = run_bench(
        "bench/nanochat_gpu_d8.py",
        "--device",
        "cpu",
        "--depth",
        "1",
        "--seq",
        "64",
        "--vocab",
        "512",
        "--device-batch",
        "2",
        "--total-batch",
        "256",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--no-compile",
    )
    assert float(result["tokens_per_second"]) > 0
    assert "mfu_percent" not in result  # no known peak for a CPU


def test_throughput_benchmark_reports_a_fraction_of_the_matmul_peak():
    result = run_bench(
        "bench/nanochat_throughput.py", "--preset", "cpu", "--device", "cpu", "--steps", "2", "--warmup", "1"
    )
    assert 0 < float(result["fraction_of_matmul_peak"]) < 1.5
    assert int(result["depth"]) == 2
