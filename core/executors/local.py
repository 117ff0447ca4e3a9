"""The local executor: each measurement in a fresh checkout on this machine (the default)."""

from __future__ import annotations

from ..checkout import Checkouts
from ..measure import Runner, Usage
from ..target import Measurement, Target
from . import Executor, Job, evaluate


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, target: Target, runner: Runner, checkouts: Checkouts, **_):
        self.target = target
        self.runner = runner
        self.checkouts = checkouts

    def measure(self, job: Job) -> tuple[Measurement, Usage]:
        with self.checkouts.measurement(job.commit) as checkout:
            return evaluate(self.target, checkout.root, checkout.scratch, job, job.log_path, self.runner)
