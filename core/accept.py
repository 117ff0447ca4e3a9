"""Acceptance policies: should a measured candidate replace the incumbent?"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from .target import Metric

Remeasure = Callable[[], "float | None"]  # one more measurement; None when it failed


@dataclass
class Decision:
    keep: bool
    reason: str
    candidate: list[float] = field(default_factory=list)  # every sample of the candidate
    incumbent: list[float] = field(default_factory=list)  # incumbent samples taken meanwhile

    @property
    def extra_runs(self) -> int:
        return len(self.candidate) - 1 + len(self.incumbent)


class Policy(ABC):
    """Decides keep/discard from the first sample, asking for more measurements if it wants."""

    name: str

    def __init__(self, metric: Metric, min_delta: float = 0.0):
        self.metric = metric
        self.min_delta = min_delta

    @abstractmethod
    def decide(
        self,
        candidate: float,
        incumbent: list[float],
        remeasure_candidate: Remeasure,
        remeasure_incumbent: Remeasure,
        simpler: bool = False,
    ) -> Decision:
        """``incumbent`` holds the incumbent's samples so far; ``simpler``: net lines removed."""


class StrictPolicy(Policy):
    """The original's rule: keep on any improvement beyond ``min_delta``, one measurement."""

    name = "strict"

    def decide(self, candidate, incumbent, remeasure_candidate, remeasure_incumbent, simpler=False):
        best = sum(incumbent) / len(incumbent)
        gain = self.metric.gain(candidate, best)
        if gain > self.min_delta:
            return Decision(True, f"improved by {gain:.6g}", [candidate])
        return Decision(False, f"not better than {best:.6g} by more than {self.min_delta:g}", [candidate])


POLICIES = {StrictPolicy.name: StrictPolicy}
