"""The evaluator output protocol while a command runs: ``phase:`` and ``progress:`` lines.

An evaluator may print, besides its final ``---`` summary block:

- ``phase: training`` once, when timed training starts, and ``phase: evaluation`` once, when it
  ends and evaluation begins (before the first: start-up);
- ``progress: frac=0.40 train_loss=3.412`` (space-separated ``key=value``; ``frac`` is the share
  of the training budget done).

The Runner reads the log as the command writes it and feeds each new line to a ``PhaseClock``,
which timestamps phase lines as it reads them (forward only, each phase once) and keeps the
deadline of the phase the command is in:

- start-up, until ``phase: training``: the whole allowance (start-up + budget + slack +
  evaluation), so a command that prints no phase lines keeps one deadline;
- training, from ``phase: training``: the budget plus a small slack for the last step;
- evaluation, from ``phase: evaluation``: the evaluation allowance.

So the deadline follows what the evaluator actually spent: a slow start-up on a busy machine does
not eat into training, and a run that trains past its budget is still stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PHASES = ("start-up", "training", "evaluation")
PHASE_LINE = re.compile(r"^phase:\s*(training|evaluation)\s*$")
PROGRESS_LINE = re.compile(r"^progress:\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Allowances:
    """Seconds one evaluator command may spend in each phase before the Runner stops it.

    ``hint``: what the user can do when start-up or evaluation runs out (e.g. which setting to
    raise); the target knows its own settings.
    """

    budget: float  # timed training
    startup: float = 0.0  # before ``phase: training``: imports, data, compilation, warm-up
    evaluation: float = 0.0  # after ``phase: evaluation``
    hint: str = ""

    @property
    def slack(self) -> float:
        """How late the training phase may end: 30 s or 10% of the budget, whichever is more.

        The evaluator keeps its own budget to the second; this covers what follows its last timed
        step before ``phase: evaluation`` (a slow last step, saving and handing over the model),
        which on a busy machine takes many seconds. A runaway is still stopped.
        """
        return max(30.0, 0.1 * self.budget)

    @property
    def total(self) -> float:
        return self.startup + self.budget + self.slack + self.evaluation


def parse_progress(text: str) -> dict[str, float] | None:
    """``frac=0.4 train_loss=3.41`` as numbers; None unless every pair parses and ``frac`` is there."""
    values = {}
    for pair in text.split():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return None
        try:
            values[key] = float(value)
        except ValueError:
            return None
    return values if "frac" in values else None


class PhaseClock:
    """The phase one command is in and its deadline, from the protocol lines it printed so far."""

    def __init__(self, allowances: Allowances | float, started: float):
        if not isinstance(allowances, Allowances):  # a plain deadline: one phase, no slack
            allowances = Allowances(float(allowances))
            self.fixed = True
        else:
            self.fixed = False
        self.allowances = allowances
        self.phase = PHASES[0]
        self.phase_started = started
        self.deadline = started + (allowances.budget if self.fixed else allowances.total)
        self._partial = ""

    def feed(self, text: str, now: float) -> list[dict[str, float]]:
        """Read newly written output; return the progress lines completed in it."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        found = []
        for line in lines:
            line = line.rstrip("\r")
            phase = PHASE_LINE.match(line)
            if phase and not self.fixed:
                self._enter(phase.group(1), now)
                continue
            progress = PROGRESS_LINE.match(line)
            values = parse_progress(progress.group(1)) if progress else None
            if values is not None:
                found.append(values)
        return found

    def _enter(self, phase: str, now: float) -> None:
        if PHASES.index(phase) <= PHASES.index(self.phase):
            return  # forward only, each phase once
        self.phase, self.phase_started = phase, now
        a = self.allowances
        self.deadline = now + (a.budget + a.slack if phase == "training" else a.evaluation)

    @property
    def allowance(self) -> float:
        """Seconds the current phase may last in all."""
        return self.deadline - self.phase_started

    def status(self, now: float) -> str:
        """The live line's view: the phase and its elapsed time against its allowance."""
        return f"{self.phase} {now - self.phase_started:.0f}s/{self.allowance:.0f}s"

    def overrun(self) -> str:
        """Why the command was stopped at its deadline: which phase ran past which allowance."""
        a = self.allowances
        if self.fixed:
            return f"ran past its {a.budget:g} s deadline"
        hint = f"; {a.hint}" if a.hint else ""
        if self.phase == "training":
            return (
                f"training ran past the {a.budget:g} s budget + {a.slack:g} s slack without a "
                "'phase: evaluation' line: the training loop does not stop at the budget"
            )
        if self.phase == "evaluation":
            return f"evaluation ran past its {a.evaluation:g} s allowance{hint}"
        return (
            f"ran past {a.total:g} s (start-up {a.startup:g} + budget {a.budget:g} + slack "
            f"{a.slack:g} + evaluation {a.evaluation:g}) without a 'phase: training' line{hint}"
        )
