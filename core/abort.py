"""Early abort: stop a candidate whose progress curve falls clearly behind the incumbent's.

A curve is the list of ``(frac, value)`` points of one measurement's ``progress:`` lines for the
target's curve key. At a candidate's progress point at fraction f (never before ``after``), the
incumbent's curves are read at f (linear interpolation), and the candidate is stopped when

    behind(f) > max(z · σ(f) · sqrt(1 + 1/n),  catch_up · (incumbent(f) − incumbent(end)))

where behind is how much worse the candidate is than the incumbent's mean at f, σ(f) the spread of
repeated curves of one commit at f (pooled, as the metric's noise is), n the incumbent's curves,
and the second term the share of the incumbent's own remaining improvement after f that a
candidate may still make up (learning curves cross: a larger model starts slower).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence

from .target import Metric

Curve = Sequence[Sequence[float]]  # [(frac, value), ...] in order of frac


def value_at(curve: Curve, frac: float) -> float | None:
    """The curve's value at ``frac`` (linear between points); None outside the points it has."""
    fracs = [point[0] for point in curve]
    if not fracs or frac < fracs[0] or frac > fracs[-1]:
        return None
    i = bisect.bisect_left(fracs, frac)
    if fracs[i] == frac:
        return curve[i][1]
    (f0, v0), (f1, v1) = curve[i - 1], curve[i]
    return v0 + (v1 - v0) * (frac - f0) / (f1 - f0)


def curve_noise(groups: Sequence[Sequence[Curve]], frac: float) -> float | None:
    """Pooled σ at ``frac`` of groups of repeated curves (each group: one commit)."""
    squares, freedom = 0.0, 0
    for group in groups:
        values = [v for v in (value_at(c, frac) for c in group) if v is not None]
        if len(values) > 1:
            mean = statistics.fmean(values)
            squares += sum((v - mean) ** 2 for v in values)
            freedom += len(values) - 1
    return math.sqrt(squares / freedom) if freedom else None


class EarlyAbort:
    """The ``Runner.on_progress`` callback of a candidate's first measurement.

    Records the candidate's curve in ``curve`` and returns a reason to stop when it is behind
    (kept in ``reason``).
    """

    def __init__(
        self,
        key: Metric,
        incumbent: Sequence[Curve],
        groups: Sequence[Sequence[Curve]],
        *,
        after: float = 0.2,
        z: float = 3.0,
        catch_up: float = 0.5,
        enabled: bool = True,
        work: str | None = None,
    ):
        self.key = key
        self.work = work
        self.incumbent = [c for c in incumbent if c]
        self.groups = groups
        self.after = after
        self.z = z
        self.catch_up = catch_up
        self.enabled = enabled
        self.curve: list[list[float]] = []
        self.reason: str | None = None

    def __call__(self, progress: dict[str, float]) -> str | None:
        value = progress.get(self.key.name)
        if value is None or not math.isfinite(value):
            return None
        frac = progress["frac"]
        done = progress.get(self.work) if self.work else None
        self.curve.append([frac, value] if done is None else [frac, value, done])
        if not self.enabled or frac < self.after or self.reason:
            return None
        self.reason = self.verdict(frac, value)
        return self.reason

    def verdict(self, frac: float, value: float) -> str | None:
        """The reason to stop a candidate at ``value`` at ``frac``, or None."""
        points = [v for v in (value_at(c, frac) for c in self.incumbent) if v is not None]
        sigma = curve_noise(self.groups, frac)
        if not points or sigma is None:
            return None  # no incumbent curve there, or no spread to judge by: never abort blind
        reference = statistics.fmean(points)
        ends = [c[-1][1] for c in self.incumbent]
        still_to_gain = max(0.0, self.key.gain(statistics.fmean(ends), reference))
        margin = max(self.z * sigma * math.sqrt(1 + 1 / len(points)), self.catch_up * still_to_gain)
        behind = self.key.gain(reference, value)
        if behind > margin:
            return (
                f"aborted at {frac:.0%} of the budget: {self.key.name} {value:.4g} vs "
                f"{reference:.4g} (σ {sigma:.2g})"
            )
        return None
