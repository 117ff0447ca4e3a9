"""Early abort: stop a candidate whose progress curve falls clearly behind the incumbent's.

A curve is the list of ``(frac, value)`` points of one measurement's ``progress:`` lines for the
target's curve key, or ``(frac, value, work)`` where the target also names a key counting the work
done so far (nanochat: tokens). At a candidate's progress point at fraction f (never before
``after``, nor after ``until``), the incumbent's curves are read at f (linear interpolation), and
the candidate is stopped when

    behind(f) > max(z · σ(f) · sqrt(1 + 1/n),  catch_up · (incumbent(f) − incumbent(end)))

where behind is how much worse the candidate is than the incumbent's mean at f, σ(f) the spread of
repeated curves of one commit at f (pooled, as the metric's noise is), n the incumbent's curves,
and the second term the share of the incumbent's own remaining improvement after f that a
candidate may still make up (learning curves cross: a larger model starts slower). The last tenth
of the budget is not judged: a stop there saves little, and there the catch-up term is gone, so
the rule's many looks at the noise margin alone carry most of its stops of a change that would
have ended as well as the incumbent.

On a busy machine the spread at equal time is mostly the machine's speed, not the code (a slowed
run has simply trained on less), so with a work count the same test is also made at equal work,
where that spread is small: a candidate behind there by the margin (σ and catch-up read at equal
work, with ``z_work`` in place of z) is stopped if it is also behind at equal time. The second
condition lets a candidate that learns less per token but runs faster go on. The higher bar
(z_work 2 to z's 1.5) is for the second chance to stop that this test adds at every point: a
change with no effect is stopped less often, while a worse one is far behind at equal work (on
nanochat's CPU preset, the discards stopped there were 3 to 5σ behind; the two changes with no
effect stopped there, 2.2σ).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .target import Metric

Curve = Sequence[Sequence[float]]  # [(frac, value[, work]), ...] in order of frac
FRAC, WORK = 0, 2  # the axes a curve is read along: the share of the budget, the work done


def value_at(curve: Curve, x: float, axis: int = FRAC) -> float | None:
    """The curve's value where its ``axis`` is ``x`` (linear between points); None outside the
    points it has."""
    points = [(point[axis], point[1]) for point in curve if len(point) > axis]
    xs = [point[0] for point in points]
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    i = bisect.bisect_left(xs, x)
    if xs[i] == x:
        return points[i][1]
    (x0, v0), (x1, v1) = points[i - 1], points[i]
    return v0 + (v1 - v0) * (x - x0) / (x1 - x0)


def curve_noise(groups: Sequence[Sequence[Curve]], x: float, axis: int = FRAC) -> float | None:
    """Pooled σ at ``x`` on ``axis`` of groups of repeated curves (each group: one commit)."""
    squares, freedom = 0.0, 0
    for group in groups:
        values = [v for v in (value_at(c, x, axis) for c in group) if v is not None]
        if len(values) > 1:
            mean = statistics.fmean(values)
            squares += sum((v - mean) ** 2 for v in values)
            freedom += len(values) - 1
    return math.sqrt(squares / freedom) if freedom else None


@dataclass(frozen=True)
class Gap:
    """How far a candidate's point is behind the incumbent's curves at one place on one axis."""

    behind: float  # worse than the incumbent's mean there (negative: ahead)
    reference: float  # the incumbent's mean there
    sigma: float  # the spread of repeated curves there
    spread: float  # σ · sqrt(1 + 1/n): the noise of the difference
    still_to_gain: float  # the incumbent's own improvement from there to its end


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
        until: float = 0.9,
        z: float = 1.5,
        z_work: float = 2.0,
        catch_up: float = 0.5,
        enabled: bool = True,
        work: str | None = None,
    ):
        self.key = key
        self.work = work
        self.incumbent = [c for c in incumbent if c]
        self.groups = groups
        self.after = after
        self.until = until
        self.z = z
        self.z_work = z_work
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
        if not self.enabled or not self.after <= frac <= self.until or self.reason:
            return None
        self.reason = self.verdict(frac, value, done)
        return self.reason

    def verdict(self, frac: float, value: float, done: float | None = None) -> str | None:
        """The reason to stop a candidate at ``value`` at ``frac`` (after ``done`` work), or None."""
        at_time = self.gap(frac, value, FRAC)
        if at_time is None:
            return None  # no incumbent curve there, or no spread to judge by: never abort blind
        where = f"aborted at {frac:.0%} of the budget: {self.key.name} {value:.4g} vs"
        if at_time.behind > self.margin(at_time, self.z):
            return f"{where} {at_time.reference:.4g} (σ {at_time.sigma:.2g})"
        at_work = None if done is None else self.gap(done, value, WORK)
        # behind at equal time too: it is not making up in speed what it loses per unit of work
        if at_work and at_work.behind > self.margin(at_work, self.z_work) and at_time.behind > 0:
            return (
                f"{where} {at_work.reference:.4g} at equal {self.work} (σ {at_work.sigma:.2g}), "
                f"{at_time.reference:.4g} at equal time (σ {at_time.sigma:.2g})"
            )
        return None

    def margin(self, gap: Gap, z: float) -> float:
        return max(z * gap.spread, self.catch_up * gap.still_to_gain)

    def gap(self, x: float, value: float, axis: int) -> Gap | None:
        """The candidate's ``value`` against the incumbent's curves where ``axis`` is ``x``; None
        where they have no point there or no spread to judge by."""
        points = [v for v in (value_at(c, x, axis) for c in self.incumbent) if v is not None]
        sigma = curve_noise(self.groups, x, axis)
        ends = [c[-1][1] for c in self.incumbent if len(c[-1]) > axis]
        if not points or sigma is None or not ends:
            return None
        reference = statistics.fmean(points)
        return Gap(
            behind=self.key.gain(reference, value),
            reference=reference,
            sigma=sigma,
            spread=sigma * math.sqrt(1 + 1 / len(points)),
            still_to_gain=max(0.0, self.key.gain(statistics.fmean(ends), reference)),
        )
