"""Honest runs measure the same isolated as in place (issue 10: "same numbers as before").

Alternates two ways of measuring one commit: isolated (a clean checkout of the commit, every
command in the sandbox, as a run measures now) and in place (the workspace itself, no sandbox, as
measurements ran before), then prints each way's mean and σ, the difference of the means in σ (the
larger of the two) and their ratio. Targets: the perf example, and nanochat_bpb's CPU preset shrunk
to seconds (fixed seed, offline corpus: the standard library).

    python bench/isolation_parity.py [perf|nanochat] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from autoresearch.checkout import Checkouts
from autoresearch.config import load_target
from autoresearch.measure import Evaluation, Runner
from autoresearch.workspace import Workspace

TARGETS = {
    "perf": ["perf_example"],
    "nanochat": [
        "nanochat_bpb", "--preset", "cpu", "-o", "device=cpu", "-o", "corpus=stdlib", "-o", "MAX_SEQ_LEN=64",
        "-o", "VOCAB_SIZE=512", "-o", "EVAL_TOKENS=2048", "-o", "EVAL_BATCH_SIZE=8", "-o", "DEPTH=2",
        "-o", "ASPECT_RATIO=32", "-o", "HEAD_DIM=32", "-o", "TOTAL_BATCH_SIZE=256",
        "-o", "DEVICE_BATCH_SIZE=4",
    ],
}  # fmt: skip
BUDGET = {"perf": None, "nanochat": 3.0}


class Unsandboxed(Runner):
    """The runner as it was before isolation: every command bare."""

    def run(self, command, cwd, log_path, deadline, env=None, sandbox=None, on_progress=None):
        return super().run(command, cwd, log_path, deadline, env, None, on_progress)


def measure(target, root: Path, scratch: Path, log: Path, runner: Runner, budget: float) -> float:
    evaluation = Evaluation(
        root=root, scratch=scratch, budget=budget, seed=42, log_path=log, runner=runner,
        allowances=target.allowances(budget), secrets=tuple(target.secret_paths()), network=target.network,
    )  # fmt: skip
    result = target.evaluate(evaluation)
    if not result.ok:
        raise SystemExit(f"an honest measurement failed ({result.status}: {result.reason}); log: {log}")
    return result.metric


def parity(name: str, runs: int, work: Path) -> dict:
    """``runs`` measurements each way, alternating, of the untouched workspace of ``name``."""
    ws = work / "ws"
    cli = [sys.executable, "-c", "from autoresearch.cli import cli; cli()"]
    subprocess.run([*cli, "init", *TARGETS[name], str(ws)], check=True, capture_output=True)
    subprocess.run([*cli, "prepare"], cwd=ws, check=True, capture_output=True)
    target = load_target(ws)
    budget = BUDGET[name] or target.budget
    checkouts, head = Checkouts(Workspace(ws)), Workspace(ws).head()
    values: dict[str, list[float]] = {"isolated": [], "in place": []}
    for n in range(runs):
        with checkouts.measurement(head) as checkout:
            log = work / f"isolated-{n}.log"
            values["isolated"].append(measure(target, checkout.root, checkout.scratch, log, Runner(), budget))
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            log = work / f"in-place-{n}.log"
            values["in place"].append(measure(target, ws, Path(scratch), log, Unsandboxed(), budget))
    means = {way: statistics.fmean(v) for way, v in values.items()}
    sigmas = {way: statistics.stdev(v) if len(v) > 1 else 0.0 for way, v in values.items()}
    sigma = max(sigmas.values()) or float("inf")
    return {
        "target": target.name, "metric": target.metric.name, "runs": runs, "values": values,
        "mean": means, "sigma": sigmas,
        "difference_in_sigma": (means["isolated"] - means["in place"]) / sigma,
        "ratio": means["isolated"] / means["in place"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=TARGETS, nargs="?", default="perf")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("AUTORESEARCH_CACHE", tempfile.mkdtemp(prefix="parity-cache-"))
    with tempfile.TemporaryDirectory(prefix="parity-") as work:
        report = parity(args.target, args.runs, Path(work))
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['target']}: {report['metric']}, {report['runs']} runs each way, alternating")
    for way in ("isolated", "in place"):
        print(f"  {way:<9} mean {report['mean'][way]:.4f}  σ {report['sigma'][way]:.4f}")
    print(f"  difference {report['difference_in_sigma']:+.2f} σ, ratio {report['ratio']:.3f}")


if __name__ == "__main__":
    main()
