"""Framework time per experiment at ledger sizes 10, 1,000 and 10,000.

Everything but the agent's thinking and the evaluator's own run: brief rendering, change checks,
git commit/reset, attempt refs, ledger reads and writes. The target answers instantly in-process and
the agent makes a one-line edit, so what is timed is the harness. Goal: median < 0.3 s, and the
10,000-row median within 1.5x of the 10-row one.

It also times what isolation adds to each measurement: a clean checkout of the commit plus the
sandbox around a command, against the same command run bare. Goal: < 0.5 s.

    python bench/overhead.py [--experiments 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from autoresearch import Agent, Brief, Measurement, Metric, Proposal, Target
from autoresearch.checkout import Checkouts
from autoresearch.display import Display
from autoresearch.engine import Engine, RunOptions
from autoresearch.history import History
from autoresearch.measure import Runner
from autoresearch.sandbox import Sandbox, bwrap_problem
from autoresearch.workspace import Workspace

SIZES = (10, 1_000, 10_000)


class InstantTarget(Target):
    name = "instant"

    def __init__(self):
        super().__init__(Metric("loss", "lower"), editable=["model.py"], protected=["eval.py"], budget=1)

    def evaluate(self, evaluation) -> Measurement:
        value = float((evaluation.root / "model.py").read_text().split("=")[1])
        return Measurement("ok", abs(value - 0.5), {"memory_gb": 0.1})


class CountingAgent(Agent):
    """Writes a fresh value every time, so no proposal repeats an earlier diff."""

    name = "counting"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def propose(self, brief: Brief) -> Proposal:
        self.calls += 1
        (brief.root / "model.py").write_text(f"X = {1 + self.calls / 1e6}\n")
        return Proposal(f"X step {self.calls}")


def workspace(root: Path) -> Workspace:
    root.mkdir()
    (root / "model.py").write_text("X = 1.0\n")
    (root / "eval.py").write_text("# protected\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    env = {
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    return Workspace(root)


def prefill(history: History, ws: Workspace, tag: str, rows: int) -> None:
    """A ledger that already holds ``rows`` experiments of this run (baseline first)."""
    head = ws.head()
    history.create_run(tag, "instant", "counting", {}, {}, "loss", "lower")
    history.db["experiments"].insert_all(
        {
            "run": tag,
            "number": n,
            "status": "baseline" if n == 0 else "discard",
            "description": f"old idea {n}",
            "parent_commit": head,
            "commit": head,
            "diff": f"--- a/model.py\n+++ b/model.py\n-X = 1.0\n+X = {n}\n",
            "diff_sha": f"{n:064x}",
            "metric": 0.5 if n == 0 else 0.6 + n / 1e6,
            "samples": "[0.5, 0.5, 0.5]" if n == 0 else "[0.6]",
            "extras": "{}",
        }
        for n in range(rows)
    )


def measure(size: int, experiments: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp) / "ws")
        ws.ensure_state_dir()
        history = History(ws.state_dir / "history.db")
        prefill(history, ws, "bench", size)
        options = RunOptions(tag="bench", max_experiments=experiments)
        engine = Engine(
            ws, InstantTarget(), CountingAgent(), history, options, Display(open("/dev/null", "w"))
        )
        engine.run()
        rows = history.experiments("bench")[size:]
        return [row["total_seconds"] for row in rows]


def isolation_seconds(runs: int = 10) -> float:
    """Median seconds a clean checkout + the sandbox add to one measurement of ``true``."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp) / "ws")
        ws.ensure_state_dir()
        checkouts, commit, runner, log = Checkouts(ws), ws.head(), Runner(), Path(tmp) / "log"
        bare, isolated = [], []
        for _ in range(runs):
            started = time.monotonic()
            runner.run(["true"], ws.root, log, 10)
            bare.append(time.monotonic() - started)
            started = time.monotonic()
            with checkouts.measurement(commit) as checkout:
                box = Sandbox(writable=(checkout.scratch,))  # the checkout is read-only, as in a run
                runner.run(["true"], checkout.root, log, 10, sandbox=box)
            isolated.append(time.monotonic() - started)
        return statistics.median(isolated) - statistics.median(bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for size in SIZES:
        started = time.monotonic()
        seconds = measure(size, args.experiments)
        results[size] = {
            "median_s": statistics.median(seconds),
            "p90_s": sorted(seconds)[int(0.9 * len(seconds))],
        }
        results[size]["wall_s"] = time.monotonic() - started
    ratio = results[SIZES[-1]]["median_s"] / results[SIZES[0]]["median_s"]
    isolation = isolation_seconds()
    if args.json:
        print(json.dumps({"sizes": results, "ratio_10000_vs_10": ratio, "isolation_s": isolation}))
        return
    print(f"{'ledger rows':>12}  {'median s':>9}  {'p90 s':>7}")
    for size, r in results.items():
        print(f"{size:>12}  {r['median_s']:>9.4f}  {r['p90_s']:>7.4f}")
    print(f"ratio 10,000 vs 10: {ratio:.2f}x (goal <= 1.5x); goal median < 0.3 s")
    sandboxed = "checkout + sandbox" if bwrap_problem() is None else "checkout (no sandbox here)"
    print(f"{sandboxed} per measurement: {isolation:.3f} s (goal < 0.5 s)")


if __name__ == "__main__":
    main()
