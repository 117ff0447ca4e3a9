"""Executors: where one measurement of one commit runs.

The engine asks an executor to measure a commit (``Executor.measure``) and gets back the
``Measurement`` and the ``Usage`` the harness measured; the experiment's story (what to measure,
what it means) stays in ``engine.py``. Every executor runs the target's evaluator the same way,
through ``evaluate`` below: a clean checkout of exactly the commit's tracked files, the commands
sandboxed (``measure.Evaluation``). Where the checkout is made differs:

- ``local`` (``local.py``): on this machine, in ``.autoresearch/checkouts/`` (the default);
- ``ray`` (``ray.py`` on the driver, ``node.py`` on the node): a Ray task on a cluster node, which
  receives the commit as a git bundle and streams its log back.

An executor never writes git refs or the ledger: the driver does, with what ``measure`` returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from ..abort import EarlyAbort
from ..measure import Evaluation, Runner, Usage
from ..target import ConfigError, Measurement, Target

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """One measurement: the commit, and what its evaluation needs besides the checkout."""

    commit: str
    log_path: Path  # the experiment's log on the driver; every run of the experiment appends to it
    budget: float
    seed: int | None
    network: bool
    env: dict[str, str] = field(default_factory=dict)  # the slot's (a device, a share of the cores)
    watch: EarlyAbort | None = None  # sees the progress lines; keeps the curve; may stop the run


class Executor(ABC):
    """Measures one commit at a time per calling thread; several threads may call at once."""

    name: str

    @abstractmethod
    def measure(self, job: Job) -> tuple[Measurement, Usage]:
        """Measure ``job.commit``: the evaluator's failures are a ``Measurement``, never raised;
        Ctrl-C (the runner's ``interrupted``) stops it and returns status ``interrupted``."""

    def close(self) -> None:
        """Release what the executor holds (a cluster connection)."""

    def host(self) -> str | None:
        """Where the calling thread's last measurement ran, when not on this machine."""
        return None


def evaluate(target: Target, root: Path, scratch: Path, job: Job, log_path: Path, runner: Runner):
    """Run ``target``'s evaluator on the checkout at ``root``: the one way every executor measures.

    A bug in the target plugin is a ``crash`` measurement, not the end of the run."""
    evaluation = Evaluation.of(
        target,
        root,
        scratch,
        job.budget,
        job.seed,
        log_path,
        runner,
        job.network,
        env=job.env,
        on_progress=job.watch,
    )
    try:
        measurement = target.evaluate(evaluation)
    except Exception as error:
        measurement = Measurement("crash", reason=f"evaluator error: {type(error).__name__}: {error}")
    return measurement, evaluation.usage


def make_executor(name: str, address: str | None, devices: str | None, **local) -> Executor:
    """The executor ``run --executor`` names; a clear error for a combination that cannot work."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}")
    if name == "local":
        if address:
            raise ConfigError("--ray-address needs --executor ray")
        from .local import LocalExecutor

        return LocalExecutor(**local)
    if devices:
        raise ConfigError(
            "--devices maps this machine's GPUs to slots; with --executor ray, Ray gives each "
            "measurement a GPU of its node: drop --devices (--slots sets the measurements at once)"
        )
    from .ray import RayExecutor

    return RayExecutor(address=address, **local)
