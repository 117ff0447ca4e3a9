"""The perf_example target: make multiply() faster; a wrong answer is never measured."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from autoresearch import Measurement, Metric, Target, hookimpl
from autoresearch.measure import Evaluation, measurement

WORKSPACE_FILES = ("multiply.py", "test_multiply.py", "benchmark.py")
NO_BYTECODE = {"PYTHONDONTWRITEBYTECODE": "1"}  # no __pycache__ folders in the workspace


class PerfExample(Target):
    name = "perf_example"
    description = "Make a pure-Python polynomial multiply faster (median CPU ms); wrong answers are invalid."
    objective = (
        "Lower runtime_ms, the median CPU time of multiply() in multiply.py on the benchmark input. "
        "Every test in test_multiply.py must still pass, with the standard library only."
    )

    def __init__(self):
        super().__init__(
            metric=Metric("runtime_ms", "lower", noise="relative"),  # a duration: noise scales with it
            editable=["multiply.py"],
            protected=["test_multiply.py", "benchmark.py"],
            budget=30,
            startup_seconds=10,
        )

    @classmethod
    def scaffold(cls, root: Path, options: dict) -> dict:
        template = resources.files(__package__) / "workspace"
        for name in WORKSPACE_FILES:
            (root / name).write_text((template / name).read_text())
        return {}

    def evaluate(self, evaluation: Evaluation) -> Measurement:
        tests = evaluation.run([sys.executable, "-m", "unittest", "test_multiply"], env=NO_BYTECODE)
        if tests.exit_code == 1:  # a failing test: the answer is wrong, never measured
            reason = f"correctness tests failed: {first_failure(tests.output())}"
            return Measurement("invalid", reason=reason)
        if tests.status != "ok":  # crashed (killed by a signal, ...), timed out or interrupted
            return measurement(tests, self.metric.name)
        # benchmark.py times multiply() in a worker process from outside it: no clock the agent's
        # code can replace decides runtime_ms
        timed = evaluation.run([sys.executable, "benchmark.py"], env=NO_BYTECODE)
        return measurement(timed, self.metric.name)


def first_failure(output: str) -> str:
    """The first failing test in unittest's report, e.g. 'FAIL: test_small_products'."""
    failures = [line.split(" (")[0] for line in output.splitlines() if line.startswith(("FAIL:", "ERROR:"))]
    return failures[0] if failures else "see the log"


@hookimpl
def register_targets(register):
    register(PerfExample)
