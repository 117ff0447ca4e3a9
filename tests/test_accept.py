"""Acceptance policies: strict, the noise estimate, the noise-aware paths, relative noise."""

import math

import pytest

from autoresearch.accept import POLICIES, NoiseAwarePolicy, StrictPolicy, estimate_noise
from autoresearch.target import Metric

LOWER = Metric("loss", "lower")
HIGHER = Metric("accuracy", "higher")
BASELINE = [0.0] * 5  # five incumbent samples at 0: se = σ·sqrt(1 + 1/5) at the first look


class Script:
    """A remeasure callable returning the given values in turn; fails the test if overused."""

    def __init__(self, *values):
        self.values = list(values)
        self.calls = 0

    def __call__(self):
        assert self.calls < len(self.values), "more re-measurements than scripted"
        self.calls += 1
        return self.values[self.calls - 1]


def noise_decide(
    candidate,
    cand=(),
    inc=(),
    metric=LOWER,
    noise=1.0,
    min_delta=0.0,
    simpler=False,
    largest_gain=None,
    **settings,
):
    """Run the noise-aware policy against BASELINE with scripted re-measurements."""
    policy = NoiseAwarePolicy(metric, min_delta, **settings)
    cand, inc = Script(*cand), Script(*inc)
    decision = policy.decide(candidate, BASELINE, cand, inc, simpler, noise=noise, largest_gain=largest_gain)
    return decision, cand.calls, inc.calls


# ---- strict -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric,candidate,min_delta,keep",
    [
        (LOWER, 0.9, 0.0, True),
        (LOWER, 1.0, 0.0, False),
        (LOWER, 1.1, 0.0, False),
        (LOWER, 0.9, 0.1, False),  # a gain of exactly min_delta is not enough
        (LOWER, 0.85, 0.1, True),
        (HIGHER, 1.1, 0.0, True),
        (HIGHER, 0.9, 0.0, False),
        (HIGHER, 1.1, 0.2, False),
        (HIGHER, 1.25, 0.2, True),
    ],
)
def test_strict_keeps_any_gain_beyond_min_delta(metric, candidate, min_delta, keep):
    decision = StrictPolicy(metric, min_delta).decide(candidate, [1.0], Script(), Script())
    assert decision.keep is keep
    assert decision.candidate == [candidate] and decision.extra_runs == 0
    assert decision.gain == pytest.approx(metric.gain(candidate, 1.0))


def test_policies_by_name():
    assert POLICIES == {"noise": NoiseAwarePolicy, "strict": StrictPolicy}


# ---- noise estimate -----------------------------------------------------------------------------


def test_estimate_noise():
    assert estimate_noise() is None
    assert estimate_noise([]) is None
    assert estimate_noise([1.0]) is None  # one sample: no spread to see
    assert estimate_noise([1.0], [2.0]) is None
    assert estimate_noise([0.5, 0.5, 0.5]) == 0.0  # a deterministic evaluator
    assert estimate_noise([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    # pooled within groups: the groups' means differ, singletons add nothing
    assert estimate_noise([1.0, 3.0], [10.0, 12.0], [5.0]) == pytest.approx(math.sqrt(2))


def test_noise_policy_needs_an_estimate_and_a_budget():
    with pytest.raises(ValueError, match="baseline twice"):
        NoiseAwarePolicy(LOWER).decide(-5.0, BASELINE, Script(), Script(), noise=None)
    with pytest.raises(ValueError, match="max_extra_runs"):
        NoiseAwarePolicy(LOWER, max_extra_runs=1)


# ---- noise-aware: keep, discard, confirm --------------------------------------------------------


@pytest.mark.parametrize("metric,sign", [(LOWER, -1), (HIGHER, 1)])
def test_clear_gain_is_kept_and_clear_loss_discarded_at_once(metric, sign):
    decision, *calls = noise_decide(3.0 * sign, metric=metric)  # bar = 2.2·1.095 = 2.41
    assert decision.keep and decision.reason.startswith("improved by 3 >")
    assert calls == [0, 0] and decision.extra_runs == 0

    decision, *calls = noise_decide(-1.0 * sign, metric=metric)  # floor = 0.5·1.095
    assert not decision.keep and decision.reason.startswith("not better")
    assert calls == [0, 0] and decision.candidate == [-1.0 * sign]


def test_a_gain_within_half_a_standard_error_is_discarded_at_the_first_look():
    # Re-measuring such candidates rarely finds a real gain and costs most of a run's compute
    # (bench/ratchet_efficiency.py); a true 3σ gain lands there about 1% of the time.
    decision, *calls = noise_decide(-0.5)  # gain 0.5 ≤ floor 0.5·1.095
    assert not decision.keep and calls == [0, 0]
    decision, *calls = noise_decide(-0.6, cand=[-0.6], inc=[0.0], band=0.5, max_extra_runs=2)
    assert calls == [1, 1]  # 0.6 > 0.548: measured again


def test_ambiguous_gain_is_confirmed_with_interleaved_runs_then_kept():
    decision, *calls = noise_decide(-1.5, cand=[-2.5], inc=[0.0])
    # look 2: gain 2 > 2.2·sqrt(1/2 + 1/6) = 1.80
    assert decision.keep and decision.reason.startswith("improved by 2 >")
    assert decision.candidate == [-1.5, -2.5] and decision.incumbent == [0.0]
    assert calls == [1, 1] and decision.extra_runs == 2 and decision.gain == pytest.approx(2.0)


@pytest.mark.parametrize("budget,calls", [(4, [2, 2]), (3, [2, 1])])
def test_unconfirmed_gain_is_discarded_within_the_bound(budget, calls):
    # with a band from -0.5 se, gain 1.2 stays in it until the last look, where floor = bar
    decision, *taken = noise_decide(-1.2, cand=[-1.2] * 9, inc=[0.0] * 9, max_extra_runs=budget, band=-0.5)
    assert not decision.keep and decision.reason.startswith("not confirmed")
    assert taken == calls and decision.extra_runs == budget
    assert decision.candidate == [-1.2] * (1 + calls[0]) and decision.incumbent == [0.0] * calls[1]


def test_deterministic_evaluator_needs_no_confirmation():
    decision, *calls = noise_decide(-1e-9, noise=0.0)
    assert decision.keep and calls == [0, 0]
    decision, *calls = noise_decide(-0.05, noise=0.0, min_delta=0.1)
    assert not decision.keep and calls == [0, 0]


def test_min_delta_raises_the_bar():
    decision, *_ = noise_decide(-3.0, min_delta=5.0, max_extra_runs=2, cand=[-3.0], inc=[0.0])
    assert not decision.keep and decision.extra_runs == 2


# ---- simplicity ---------------------------------------------------------------------------------


def test_simpler_tie_is_kept_at_once():
    decision, *calls = noise_decide(0.0, simpler=True)
    assert decision.keep and decision.reason == "simpler" and calls == [0, 0]


def test_simpler_slightly_worse_is_kept_after_confirmation():
    decision, *calls = noise_decide(1.0, cand=[1.0], inc=[0.0], simpler=True, max_extra_runs=2)
    # gain -1 ≥ -2.2·sqrt(1/2 + 1/6) = -1.80 when the runs run out
    assert decision.keep and decision.reason == "simpler"
    assert calls == [1, 1] and decision.candidate == [1.0, 1.0]


def test_simpler_but_clearly_worse_is_discarded_and_better_is_an_improvement():
    decision, *calls = noise_decide(3.0, simpler=True)
    assert not decision.keep and decision.reason.startswith("worse") and calls == [0, 0]
    decision, *calls = noise_decide(-3.0, simpler=True)
    assert decision.keep and decision.reason.startswith("improved")


def test_tie_without_simpler_is_not_kept():
    decision, *calls = noise_decide(0.0, cand=[0.0], inc=[0.0], max_extra_runs=2)
    assert not decision.keep and decision.reason.startswith("not better") and calls == [0, 0]
    decision, *calls = noise_decide(0.0, cand=[0.0], inc=[0.0], max_extra_runs=2, band=-0.5)
    assert not decision.keep and decision.reason.startswith("not confirmed") and calls == [1, 1]


# ---- failed re-measurements ---------------------------------------------------------------------


def test_failed_candidate_rerun_is_not_confirmed():
    decision, *calls = noise_decide(-1.5, cand=[None])
    assert not decision.keep and decision.reason == "candidate re-measurement failed"
    assert decision.candidate == [-1.5] and decision.failed == 1 and decision.extra_runs == 1


def test_failed_incumbent_rerun_is_not_confirmed():
    decision, *calls = noise_decide(-1.5, cand=[-2.5], inc=[None])
    assert not decision.keep and decision.reason == "incumbent re-measurement failed"
    assert decision.candidate == [-1.5, -2.5] and decision.incumbent == []
    assert decision.failed == 1 and decision.extra_runs == 2


# ---- too good to be true ------------------------------------------------------------------------


def test_too_good_gain_is_remeasured_before_it_is_kept():
    decision, *calls = noise_decide(-3.0, cand=[-3.0], inc=[0.0], largest_gain=0.5)
    assert decision.keep and calls == [1, 1] and decision.candidate == [-3.0, -3.0]


def test_too_good_fluke_is_not_kept():
    decision, *calls = noise_decide(-3.0, cand=[0.0], inc=[0.0], largest_gain=0.5, max_extra_runs=2)
    assert not decision.keep and calls == [1, 1]


@pytest.mark.parametrize("largest_gain", [None, 0.0, 2.0])
def test_gain_that_is_not_too_good_is_kept_at_once(largest_gain):
    decision, *calls = noise_decide(-3.0, largest_gain=largest_gain)
    assert decision.keep and calls == [0, 0]


# ---- the run's evidence ------------------------------------------------------------------------


def decided(status: str, number: int, samples: list, incumbent_samples: list) -> dict:
    return {"status": status, "number": number, "samples": samples, "incumbent_samples": incumbent_samples,
            "gain": None, "reason": None}  # fmt: skip


def test_the_incumbents_samples_are_one_noise_group_across_experiments_and_rows_stay_as_read():
    from autoresearch.accept import Evidence

    rows = [
        decided("baseline", 0, [1.0, 1.2], []),
        decided("discard", 1, [2.0], [1.4, 1.0]),  # two re-measurements of the baseline
        decided("keep", 2, [0.5], [1.2]),  # one more of the baseline, then a new incumbent
        decided("discard", 3, [0.9, 0.8], [0.7]),  # a re-measurement of the kept commit
    ]
    evidence = Evidence.from_rows(rows)
    assert rows[0]["samples"] == [1.0, 1.2] and rows[2]["samples"] == [0.5]  # read, never changed
    # each commit's samples once: no group twice, none lost because it came one per experiment
    assert evidence.groups == [[1.0, 1.2, 1.4, 1.0, 1.2], [0.9, 0.8], [0.5, 0.7]]
    assert evidence.noise == pytest.approx(estimate_noise([1.0, 1.2, 1.4, 1.0, 1.2], [0.9, 0.8], [0.5, 0.7]))
    assert Evidence().noise is None and Evidence(relative=True).noise is None  # before the baseline


# ---- relative noise ----------------------------------------------------------------------------


def test_relative_noise_is_pooled_and_judged_on_a_log_scale():
    from autoresearch.accept import Evidence

    rows = [
        {"status": "baseline", "number": 0, "samples": [40.0, 44.0], "incumbent_samples": [], "gain": None,
         "reason": None},
        {"status": "discard", "number": 1, "samples": [20.0, 22.0], "incumbent_samples": [], "gain": 0.0,
         "reason": "x"},
    ]  # fmt: skip
    relative = Evidence.from_rows(rows, relative=True)
    assert relative.noise == pytest.approx(math.log(1.1) / math.sqrt(2))  # both groups spread 10%
    assert Evidence.from_rows(rows).noise == pytest.approx(math.sqrt((8 + 2) / 2))  # the slow one dominates
    runtime = Metric("runtime_ms", "lower", noise="relative")
    slow = [41.9, 43.1, 40.8]
    decision = NoiseAwarePolicy(runtime).decide(23.0, slow, Script(), Script(), noise=relative.noise)
    assert decision.keep and decision.reason == "improved by 1.823x > 1.187x"
    assert decision.gain == pytest.approx(sum(map(math.log, slow)) / 3 - math.log(23.0))
    worse = NoiseAwarePolicy(runtime).decide(60.0, slow, Script(), Script(), noise=relative.noise)
    assert not worse.keep and worse.reason.startswith("not better: gain 0.6987x ≤ ")


def test_relative_noise_refuses_values_that_are_not_positive():
    runtime = Metric("runtime_ms", "lower", noise="relative")
    decision = NoiseAwarePolicy(runtime).decide(0.0, [1.0, 1.1], Script(), Script(), noise=0.1)
    assert not decision.keep and "relative noise needs positive values" in decision.reason
