"""The target interface: what a ratchet improves and how it is measured."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from .protocol import Allowances

if TYPE_CHECKING:
    from .measure import Evaluation


class ConfigError(ValueError):
    """Bad user input in ``autoresearch.yaml`` or on the command line (one line, says what to do)."""


@dataclass(frozen=True)
class Metric:
    """The scalar being ratcheted and which way is better."""

    name: str
    direction: str = "lower"
    noise: str = "absolute"  # "relative": noise grows with the value (durations); judged on a log scale

    def __post_init__(self):
        if self.direction not in ("lower", "higher"):
            raise ConfigError(f"direction must be 'lower' or 'higher', not {self.direction!r}")
        if self.noise not in ("absolute", "relative"):
            raise ConfigError(f"noise must be 'absolute' or 'relative', not {self.noise!r}")

    def gain(self, candidate: float, incumbent: float) -> float:
        """Improvement of ``candidate`` over ``incumbent``: positive means better."""
        return incumbent - candidate if self.direction == "lower" else candidate - incumbent


@dataclass
class Measurement:
    """One evaluator run: ``ok``, ``crash``, ``timeout``, ``interrupted``, ``invalid`` or ``aborted``.

    ``invalid``: the candidate ran but broke the target's rules (a wrong answer); it is never kept.
    ``aborted``: stopped early because its progress curve fell behind the incumbent's.
    """

    status: str
    metric: float | None = None
    extras: dict = field(default_factory=dict)
    reason: str | None = None
    seconds: float = 0.0
    log_path: str | None = None
    exit_code: int | None = None  # the last command's: tells a wrong answer (1) from a crash (-11)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.metric is not None and math.isfinite(self.metric)


class Target(ABC):
    """Base class of every target plugin.

    A target is built from the workspace's ``autoresearch.yaml`` (``from_config``) and scaffolds
    new workspaces (``scaffold``). Subclasses set the class attributes and implement ``evaluate``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    template: ClassVar[str] = "default.md"  # program template under program_templates/
    objective: ClassVar[str] = "Improve the metric."
    in_place: ClassVar[bool] = False  # works in the user's existing repo instead of a new ./NAME
    network: ClassVar[bool] = False  # whether its evaluator needs the network (off in the sandbox)
    gpu: bool = False  # whether a measurement needs a GPU (a Ray task asks for one)

    def __init__(
        self,
        metric: Metric,
        editable: list[str],
        protected: list[str] | None = None,
        budget: float = 300.0,
        startup_seconds: float = 20.0,
        eval_seconds: float = 10.0,
        takes_seed: bool = False,
        env_passthrough: list[str] | None = None,
        curve: Metric | None = None,
        curve_work: str | None = None,
        throughput: str | None = None,
    ):
        self.metric = metric
        self.editable = list(editable)  # glob patterns relative to the workspace root
        self.protected = list(protected or [])
        self.budget = float(budget)  # seconds of the experiment's own work
        self.startup_seconds = float(startup_seconds)  # allowance before timed training starts
        self.eval_seconds = float(eval_seconds)  # allowance after timed training ends
        self.takes_seed = takes_seed  # the harness passes AUTORESEARCH_SEED to the evaluator
        self.env_passthrough = list(env_passthrough or [])  # secrets the evaluator may see
        self.curve = curve  # the ``progress:`` key compared for early abort, and its direction
        self.curve_work = curve_work  # the ``progress:`` key counting work done so far (e.g. tokens)
        self.throughput = throughput  # the summary key of the evaluator's speed (e.g. tokens/s)

    def allowances(self, budget: float) -> Allowances:
        """The per-phase deadlines of one evaluator command under ``budget`` (``protocol``)."""
        hint = (
            f"if the machine is busy, raise the target's start-up ({self.startup_seconds:g} s) or "
            f"evaluation ({self.eval_seconds:g} s) allowance in autoresearch.yaml"
        )
        return Allowances(budget, self.startup_seconds, self.eval_seconds, hint)

    @classmethod
    def from_config(cls, config: dict, root: Path) -> Target:
        """Build the target from the workspace's parsed ``autoresearch.yaml``."""
        return cls()

    @classmethod
    def default_config(cls, options: dict) -> dict:
        """The ``autoresearch.yaml`` mapping a new workspace gets (``target`` is added by the caller).

        ``options`` holds the ``init``/``run``/``prepare`` options that were given (``None`` ones
        dropped): e.g. ``data``, ``preset``, and ``-o KEY=VALUE`` pairs. Writes nothing.
        """
        return {}

    @classmethod
    def scaffold(cls, root: Path, options: dict) -> dict:
        """Write the target's files into ``root`` (a new or existing repo); return its config."""
        return cls.default_config(options)

    def secret_paths(self) -> list[Path]:
        """Files or folders (e.g. a validation split) that an evaluator's commands must not see,
        except those the target runs with ``evaluation.run(..., secrets=True)``."""
        return []

    def cache_files(self) -> list[Path]:
        """Files in the target's data cache that the metric depends on. They are hashed when
        ``prepare`` has run and checked before every measurement; a change stops the run."""
        return []

    def prepare(self, root: Path | None, echo=print) -> None:
        """One-time set-up before the first measurement (data, tokenizer, ...). Idempotent.

        ``root`` is None when ``autoresearch prepare TARGET`` runs outside a workspace.
        """

    @abstractmethod
    def evaluate(self, evaluation: Evaluation) -> Measurement:
        """Measure the clean checkout at ``evaluation.root`` under ``evaluation.budget`` seconds.

        Run commands with ``evaluation.run(argv_or_shell_string)``: in the checkout, sandboxed,
        output to the experiment's log, deadline the target's ``allowances(budget)`` unless given.
        ``evaluation.seed`` is harness-chosen when ``takes_seed`` (else None).
        """
