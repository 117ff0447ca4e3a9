"""Acceptance policies: should a measured candidate replace the incumbent?"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import statuses
from .target import Metric

Remeasure = Callable[[], "float | None"]  # one more measurement; None when it failed
RECENT_SAMPLES = 8  # incumbent samples a decision uses: the most recent ones (drift)


@dataclass
class Decision:
    keep: bool
    reason: str
    candidate: list[float] = field(default_factory=list)  # every sample of the candidate
    incumbent: list[float] = field(default_factory=list)  # incumbent samples taken meanwhile
    gain: float = 0.0  # estimated improvement at the decision (metric units, positive is better)
    failed: int = 0  # re-measurements that returned None

    @property
    def extra_runs(self) -> int:
        """Measurements beyond the candidate's first one, failed ones included."""
        return len(self.candidate) - 1 + len(self.incumbent) + self.failed


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
        *,
        noise: float | None = None,
        largest_gain: float | None = None,
    ) -> Decision:
        """Judge the candidate's first sample against the incumbent's samples so far.

        ``incumbent``: every sample of the incumbent (the baseline's, or those of the experiment
        that kept it), plus its re-measurements in later experiments; never empty.
        ``remeasure_*``: measure the candidate or the incumbent once more (fresh seed).
        ``simpler``: the change removes net lines. ``noise``: σ of one measurement,
        ``estimate_noise(*groups)`` over every group of repeated samples of one commit so far.
        ``largest_gain``: the largest ``Decision.gain`` of a change kept for its gain (not as
        ``simpler``) so far in the run; None before the first.
        """


class StrictPolicy(Policy):
    """The original's rule: keep on any improvement beyond ``min_delta``, one measurement.

    Ignores ``simpler``, ``noise`` and ``largest_gain``.
    """

    name = "strict"

    def decide(
        self,
        candidate,
        incumbent,
        remeasure_candidate,
        remeasure_incumbent,
        simpler=False,
        *,
        noise=None,
        largest_gain=None,
    ):
        best = statistics.fmean(incumbent)
        gain = self.metric.gain(candidate, best)
        if gain > self.min_delta:
            return Decision(True, f"improved by {gain:.6g}", [candidate], gain=gain)
        reason = f"not better than {best:.6g} by more than {self.min_delta:g}"
        return Decision(False, reason, [candidate], gain=gain)


def estimate_noise(*groups: Sequence[float]) -> float | None:
    """σ of one measurement, from groups of repeated measurements (each group: one commit).

    The pooled standard deviation s = sqrt(Σ_g Σ_i (x_gi - x̄_g)² / Σ_g (n_g - 1)); for the
    baseline alone, ``estimate_noise(baseline)`` is its sample standard deviation. None when no
    group has two samples (no spread to see). 0.0 when every group agrees within itself: a
    deterministic evaluator, for which the noise-aware policy keeps any gain above ``min_delta``
    without confirmation runs.
    """
    squares = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups if len(g) > 1)
    freedom = sum(len(g) - 1 for g in groups if len(g) > 1)
    return math.sqrt(squares / freedom) if freedom else None


class NoiseAwarePolicy(Policy):
    """Keep a change only when its gain stands out of the measurement noise.

    With σ the noise of one measurement (``noise``) and C, I the candidate's and the incumbent's
    samples, at each look::

        gain  = metric.gain(mean(C), mean(I))
        se    = σ · sqrt(1/|C| + 1/|I|)                  # σ of a difference of two means
        bar   = max(min_delta, z · se)                    # keep above this
        floor = band · se + (bar - band · se) · r / R     # discard at or below this

    where r is the extra runs taken so far and R is ``max_extra_runs``. ``gain > bar`` keeps
    (reason ``improved by ...``); ``gain ≤ floor`` discards (at the first look: worse than the
    incumbent by more than ``-band`` standard errors); in between (the ambiguity band, which
    narrows to nothing at r = R) the candidate is measured again, then the incumbent, and the
    policy looks again.

    Relative noise (``metric.noise == "relative"``, durations): gains and σ are on a log scale
    (a gain of log 2 halves a runtime), reasons print ratios, ``min_delta`` is a fraction.

    Simplicity: a ``simpler`` candidate that ties within noise is kept with reason ``simpler``
    as soon as ``0 ≤ gain ≤ bar``, or when the runs run out with ``gain ≥ -bar``; it is
    discarded when ``gain < -bar``.

    Too good to be true: a gain above ``too_good · largest_gain`` on the candidate's first sample
    is measured again (candidate, then incumbent) before it can be kept.

    A re-measurement that fails (None) ends the decision: the candidate is not confirmed. With
    σ = 0 (a deterministic evaluator) nothing is re-measured but a too-good gain.
    """

    name = "noise"

    def __init__(
        self,
        metric: Metric,
        min_delta: float = 0.0,
        *,
        z: float = 2.2,
        band: float = 0.5,
        max_extra_runs: int = 12,
        too_good: float = 3.0,
    ):
        super().__init__(metric, min_delta)
        if max_extra_runs < 2:
            raise ValueError("max_extra_runs must be at least 2 (a candidate and an incumbent run)")
        self.z = z  # standard errors a gain must clear
        self.band = band  # lower edge of the ambiguity band at the first look, in standard errors
        self.max_extra_runs = max_extra_runs
        self.too_good = too_good  # multiple of the largest kept gain that is re-measured first

    def decide(
        self,
        candidate,
        incumbent,
        remeasure_candidate,
        remeasure_incumbent,
        simpler=False,
        *,
        noise=None,
        largest_gain=None,
    ):
        if noise is None:
            raise ValueError(
                "noise-aware acceptance needs a noise estimate: measure the baseline twice or more"
            )
        decision = Decision(False, "", [candidate])
        relative = self.metric.noise == "relative"
        scale = math.log if relative else float
        min_delta = math.log1p(self.min_delta) if relative else self.min_delta
        fmt = (lambda x: f"{math.exp(x):.4g}x") if relative else (lambda x: f"{x:.6g}")
        while True:
            samples = incumbent + decision.incumbent
            if relative and min(decision.candidate + samples) <= 0:
                return _verdict(
                    decision, False, f"{self.metric.name} ≤ 0: relative noise needs positive values"
                )
            gain = self.metric.gain(
                statistics.fmean(map(scale, decision.candidate)), statistics.fmean(map(scale, samples))
            )
            se = noise * math.sqrt(1 / len(decision.candidate) + 1 / len(samples))
            bar = max(min_delta, self.z * se)
            progress = decision.extra_runs / self.max_extra_runs
            floor = self.band * se + (bar - self.band * se) * progress
            suspect = (
                len(decision.candidate) == 1
                and largest_gain is not None
                and largest_gain > 0
                and gain > self.too_good * largest_gain
            )
            decision.gain = gain
            if gain > bar and not suspect:
                return _verdict(decision, True, f"improved by {fmt(gain)} > {fmt(bar)}")
            if simpler and 0 <= gain <= bar:
                return _verdict(decision, True, "simpler")
            if simpler and gain < -bar:
                return _verdict(decision, False, f"worse: gain {fmt(gain)} < {fmt(-bar)}")
            if not simpler and gain <= floor:
                why = "not confirmed" if decision.extra_runs else "not better"
                return _verdict(decision, False, f"{why}: gain {fmt(gain)} ≤ {fmt(floor)}")
            if progress >= 1 or (se == 0 and not suspect):  # a simpler tie, or σ = 0
                if simpler:
                    return _verdict(decision, True, "simpler")
                return _verdict(decision, False, f"not better: gain {fmt(gain)} ≤ {fmt(bar)}")
            if not _remeasure(decision.candidate, remeasure_candidate, decision):
                return _verdict(decision, False, "candidate re-measurement failed")
            spare = decision.extra_runs < self.max_extra_runs
            if spare and not _remeasure(decision.incumbent, remeasure_incumbent, decision):
                return _verdict(decision, False, "incumbent re-measurement failed")


def _verdict(decision: Decision, keep: bool, reason: str) -> Decision:
    decision.keep, decision.reason = keep, reason
    return decision


def _remeasure(samples: list[float], remeasure: Remeasure, decision: Decision) -> bool:
    """Append one more sample; count a failure instead when the run gave None."""
    value = remeasure()
    if value is None:
        decision.failed += 1
        return False
    samples.append(value)
    return True


POLICIES = {policy.name: policy for policy in (NoiseAwarePolicy, StrictPolicy)}


@dataclass
class Evidence:
    """What the policy needs from a run's history: noise groups, incumbent samples, largest gain,
    and the progress curves early abort compares.

    Rebuilt from the ledger rows when a run starts or resumes, then updated after each decision,
    so no decision reads the whole ledger. With ``relative`` noise, σ is pooled on a log scale.
    """

    relative: bool = False
    past_groups: list[list[float]] = field(default_factory=list)  # repeated samples of an earlier commit each
    incumbent: list[float] = field(default_factory=list)  # samples of the incumbent so far
    largest_gain: float | None = None  # largest gain kept for its gain (not as "simpler")
    past_curve_groups: list[list] = field(default_factory=list)  # repeated curves of one earlier commit each
    incumbent_curves: list = field(default_factory=list)  # the incumbent's: its samples' and re-measurements'
    incumbent_measured: int = 0  # the experiment that last measured the incumbent

    @classmethod
    def from_rows(cls, rows: list[dict], relative: bool = False) -> Evidence:
        evidence = cls(relative)
        for row in rows:
            if row["status"] in statuses.DECIDED:
                evidence.add(row)
        return evidence

    @property
    def groups(self) -> list[list[float]]:
        """Repeated samples of one commit each, σ's evidence; the incumbent's samples are one group
        across experiments (its re-measurements join it). All of them: a drift shows as a larger σ,
        the safe side, where early abort's curves keep the last few (``curve_groups``)."""
        return [*self.past_groups, self.incumbent]

    @property
    def noise(self) -> float | None:
        if self.relative:
            return estimate_noise(*[[math.log(x) for x in g] for g in self.groups if g and min(g) > 0])
        return estimate_noise(*self.groups)

    def stale(self, number: int, every: int) -> bool:
        """Whether experiment ``number`` should measure the incumbent again first: it was kept on
        one sample (a lucky one, often: the winner's curse), or not measured for ``every``
        experiments (drift). Both make later decisions fairer (bench/ratchet_efficiency.py)."""
        return len(self.incumbent) < 2 or (every > 0 and number - self.incumbent_measured >= every)

    def recent_incumbent(self, window: int = RECENT_SAMPLES) -> list[float]:
        """The incumbent's last ``window`` samples: recent ones count, older ones may have drifted."""
        return self.incumbent[-window:]

    def recent_curves(self, window: int = RECENT_SAMPLES) -> list:
        """The curves of the incumbent's last ``window`` samples, for early abort to compare with."""
        return self.incumbent_curves[-window:]

    @property
    def curve_groups(self) -> list[list]:
        """Repeated curves of one commit each, the spread early abort judges by. The incumbent's
        recent curves are one group across experiments: its re-measurements (one per experiment
        for drift) replace those of a busy stretch, as the machine is now."""
        return [*self.past_curve_groups, self.recent_curves()]

    def add(self, row: dict) -> None:
        """Learn from a recorded baseline, keep or discard row."""
        candidate, incumbent = list(row["samples"] or []), list(row["incumbent_samples"] or [])
        curves = row.get("curves") or {}
        if row["status"] in statuses.INCUMBENT:
            old_curves = self.incumbent_curves + curves.get("incumbent_samples", [])
            self._close(self.incumbent + incumbent, old_curves)
            self.incumbent = candidate
            self.incumbent_curves = list(curves.get("samples", []))
            self.incumbent_measured = row["number"]
            gain = row["gain"]
            if row["status"] == "keep" and row["reason"] != "simpler" and gain is not None:
                self.largest_gain = max(gain, self.largest_gain or gain)
        else:
            self._close(candidate, curves.get("samples", []))
            self.incumbent += incumbent
            self.incumbent_curves += curves.get("incumbent_samples", [])
            if incumbent:
                self.incumbent_measured = row["number"]

    def _close(self, samples: list[float], curves: list) -> None:
        """Keep the samples and curves of a commit no longer measured as groups, if repeated."""
        if len(samples) > 1:
            self.past_groups.append(samples)
        if len([c for c in curves if c]) > 1:
            self.past_curve_groups.append(curves)
