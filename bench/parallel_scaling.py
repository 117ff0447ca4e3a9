"""Experiments per hour with parallel slots, as a ratio to the ideal.

A synthetic target whose evaluator sleeps for its budget (a real command, in a clean checkout and
the sandbox, so 2 cores suffice) and an agent that takes a fixed time to propose. Every change is
worse than the last (strict policy), so each experiment is exactly one measurement.

- N local slots (drafting N ahead): ideal N experiments per budget. Goal: ratio >= 0.9 at N <= 8.
- One slot, proposing for 30% of the budget, drafting one ahead: ideal one per budget. Goal >= 0.95.
- ``--slots 1 --ahead 0`` (the loop of old: one experiment at a time, the very same code path): ideal
  one per budget plus the proposal. Goal: within 5%.

With 8 slots, the first measurements start one after another (each proposal is committed by the one
writer): enough rounds per slot (4) make the figure the steady rate, not the ramp.

    python bench/parallel_scaling.py [--budget 5] [--rounds 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from datetime import datetime
from pathlib import Path

from overhead import workspace

from autoresearch import Agent, Brief, Measurement, Metric, Proposal, Target
from autoresearch.display import Display
from autoresearch.engine import Engine, RunOptions
from autoresearch.history import History


class SleepTarget(Target):
    name = "sleep"

    def __init__(self, budget: float):
        super().__init__(Metric("loss", "lower"), editable=["model.py"], protected=["eval.py"], budget=budget)

    def evaluate(self, evaluation) -> Measurement:
        result = evaluation.run(["sleep", str(self.budget)], deadline=self.budget + 30)
        if result.status != "ok":
            return Measurement(result.status, reason=result.reason)
        value = float((evaluation.root / "model.py").read_text().split("=")[1])
        return Measurement("ok", value)


class SlowAgent(Agent):
    """Takes ``seconds`` to propose; each change is worse than the one before (a discard)."""

    name = "slow"

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.calls = 0

    def propose(self, brief: Brief) -> Proposal:
        self.calls += 1  # threads: a repeated value would only make one experiment invalid
        time.sleep(self.seconds)
        (brief.root / "model.py").write_text(f"X = {1 + self.calls / 1e3}\n")
        return Proposal(f"X step {self.calls}")


def rate(slots: int, ahead: int | None, budget: float, propose: float, experiments: int) -> float:
    """Experiments per second, from the first measurement's start to the last one's end."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp) / "ws")
        ws.ensure_state_dir()
        history = History(ws.state_dir / "history.db")
        options = RunOptions(
            tag="bench",
            max_experiments=experiments,
            accept="strict",
            baseline_runs=1,
            slots=slots,
            ahead=ahead,
            stale="discard",
        )
        display = Display(open("/dev/null", "w"))
        Engine(ws, SleepTarget(budget), SlowAgent(propose), history, options, display).run()
        rows = history.experiments("bench")[1:]
        assert len(rows) == experiments and all(r["status"] == "discard" for r in rows), rows
        first = min(_time(r["started_at"]) + r["propose_seconds"] for r in rows)
        last = max(_time(r["finished_at"]) for r in rows)
        return experiments / (last - first)


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0, help="seconds each evaluator sleeps")
    parser.add_argument("--rounds", type=int, default=4, help="experiments per slot")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    budget, quick = args.budget, 0.02 * args.budget
    cases = [(f"{n} slots", n, None, quick, n, 0.9) for n in (1, 2, 4, 8)]
    cases.append(("1 slot, proposing 30%, 1 ahead", 1, 1, 0.3 * budget, 1, 0.95))
    cases.append(("--slots 1 --ahead 0, proposing 30%", 1, 0, 0.3 * budget, budget / (1.3 * budget), 0.95))
    results = []
    for label, slots, ahead, propose, ideal_per_budget, goal in cases:
        experiments = slots * args.rounds if slots > 1 else 2 * args.rounds
        measured = rate(slots, ahead, budget, propose, experiments)
        ideal = ideal_per_budget / budget
        results.append(
            {
                "case": label,
                "per_hour": measured * 3600,
                "ideal_per_hour": ideal * 3600,
                "ratio": measured / ideal,
                "goal": goal,
            }
        )
    results.append({"case": "2 Ray workers", "ratio": math.nan, "note": "the Ray executor is not built yet"})
    if args.json:
        print(json.dumps(results))
        return
    print(f"budget {budget:g} s per measurement")
    print(f"{'case':<36} {'exp/hour':>9} {'ideal':>7} {'ratio':>6}  goal")
    for r in results:
        if "note" in r:
            print(f"{r['case']:<36} {r['note']}")
            continue
        print(
            f"{r['case']:<36} {r['per_hour']:>9.0f} {r['ideal_per_hour']:>7.0f} {r['ratio']:>6.2f}  "
            f">= {r['goal']:g} {'ok' if r['ratio'] >= r['goal'] else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
