"""Early abort on a command target whose evaluator prints a progress curve (real subprocesses)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.abort import FRAC, WORK, EarlyAbort, curve_noise, value_at
from autoresearch.accept import Evidence
from autoresearch.history import History
from autoresearch.target import Metric

from conftest import MODEL, command_workspace, configure, invoke

# Training loss falls from score + 2 to score over 20 steps of 0.15 s, with seeded noise.
CURVED_EVALUATE = """\
import os, random, time
import model
rng = random.Random(int(os.environ["AUTORESEARCH_SEED"]))
final = model.score()
print("phase: training", flush=True)
for step in range(1, 21):
    frac = step / 20
    time.sleep(0.15)
    print(f"progress: frac={frac} train_loss={final + 2 * (1 - frac) + rng.gauss(0, 0.02):.4f}", flush=True)
print("phase: evaluation", flush=True)
print("---")
print(f"loss: {final + rng.gauss(0, 0.02):.6f}")
"""

# The same, with a work count: each step trains ``speed`` tokens, and the speed is the machine's
# load (it varies from run to run with the seed); the loss falls with the tokens trained.
PACED_EVALUATE = """\
import math, os, random, time
import model
seed = int(os.environ["AUTORESEARCH_SEED"])
rng, speed = random.Random(seed), (1, 2, 3)[seed % 3]
final = model.score()
print("phase: training", flush=True)
for step in range(1, 21):
    time.sleep(0.15)
    loss = final + 3 * math.exp(-speed * step / 10) + rng.gauss(0, 0.005)
    print(f"progress: frac={step / 20} train_loss={loss:.4f} tokens={speed * step}", flush=True)
print("phase: evaluation", flush=True)
print("---")
print(f"loss: {loss:.6f}")
"""


@pytest.fixture
def curved(tmp_path, monkeypatch, scripted):
    root = command_workspace(tmp_path / "curved", CURVED_EVALUATE)
    monkeypatch.chdir(root)
    configure(root, "seed: true\ncurve: train_loss\n")
    scripted += [
        {"model.py": MODEL.replace("X = 3.0", "X = 9.0"), "_description": "much worse"},
        {"model.py": MODEL.replace("X = 3.0", "X = 1.7"), "_description": "real gain"},
    ]
    return root


def test_a_clearly_worse_candidate_is_stopped_early_and_never_a_sample(curved):
    result = invoke("run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t")
    assert result.exit_code == 0, result.output
    baseline, worse, better = History(curved / ".autoresearch" / "history.db").experiments("t")
    assert len(baseline["curves"]["samples"]) == 3
    assert all(len(curve) == 20 for curve in baseline["curves"]["samples"])
    assert worse["status"] == "discard"
    assert worse["reason"].startswith("aborted at 20% of the budget: train_loss ")
    assert worse["metric"] is None and worse["samples"] == [] and worse["gain"] is None
    assert worse["measure_seconds"] < baseline["measure_seconds"] / 3  # 1 of 3 seconds spent
    assert better["status"] == "keep" and better["curves"]["samples"][0][-1][0] == 1.0


def test_no_early_abort_runs_every_candidate_to_the_end(curved, scripted):
    # a third candidate after the keep: the incumbent, kept on one sample, is measured again first
    scripted.append({"model.py": MODEL.replace("X = 3.0", "X = 9.5"), "_description": "worse again"})
    args = ("run", "--agent", "scripted", "--max-experiments", "3", "--tag", "t", "--no-early-abort")
    assert invoke(*args).exit_code == 0
    worse = History(curved / ".autoresearch" / "history.db").experiment("t", 1)
    assert worse["status"] == "discard" and worse["metric"] > 30
    assert worse["reason"].startswith("not better")
    # bench/early_abort.py replays the run: where would the rule have stopped each candidate?
    bench = Path(__file__).parents[1] / "bench" / "early_abort.py"

    def replay(*options):
        command = [sys.executable, str(bench), "--workspace", str(curved), "--tag", "t", "--json", *options]
        return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    result = replay()
    assert (result["discarded"], result["kept"], result["discards_aborted"]) == (2, 1, 2)
    assert result["compute_saved_of_discards"] == 0.8 and result["keeps_aborted"] == 0.0
    # the incumbent's re-measurement is judged as a change with no effect: the rule lets it run
    assert (result["no_effect_runs"], result["no_effect_runs_stopped"]) == (1, 0)
    assert result["no_effect_runs_ending_well_stopped"] == 0
    assert result["outcomes"][0]["reason"].startswith("aborted at 20% of the budget")
    # other settings of the rule, and a hold-out part of the run
    assert replay("--z", "1e6")["discards_aborted"] == 0  # 1e6 σ: about 20000
    held_out = replay("--numbers", "2-2")
    assert (held_out["candidates"], held_out["kept"]) == (1, 1)
    # read as a run of changes with no effect, the candidates are such runs too
    as_no_op = replay("--no-op")
    assert (as_no_op["no_effect_runs"], as_no_op["no_effect_runs_stopped"]) == (4, 2)


LOSS = Metric("train_loss", "lower")
INCUMBENT = [[[f / 10, 5 - 2 * f / 10 + d] for f in range(1, 11)] for d in (-0.01, 0.0, 0.01)]


def test_curves_are_read_at_the_same_fraction():
    assert value_at(INCUMBENT[1], 0.25) == pytest.approx(4.5)
    assert value_at(INCUMBENT[1], 0.05) is None
    assert curve_noise([INCUMBENT], 0.5) == pytest.approx(0.01)


def test_the_margin_is_noise_aware_and_leaves_room_to_catch_up():
    judge = EarlyAbort(LOSS, INCUMBENT, [INCUMBENT])
    assert judge({"frac": 0.1, "train_loss": 9.0}) is None  # before 20%: never
    # at 50% the incumbent still falls by 1.0, so a candidate may be up to 0.5 behind
    assert judge({"frac": 0.5, "train_loss": 4.45}) is None
    assert judge({"frac": 0.5, "train_loss": 4.6}) == (
        "aborted at 50% of the budget: train_loss 4.6 vs 4 (σ 0.01)"
    )
    assert judge({"frac": 0.6, "train_loss": 9.0}) is None  # stopped once; the reason stays
    assert judge.reason.startswith("aborted at 50%") and judge.curve[0] == [0.1, 9.0]
    # at the end only the noise protects it: 1.5σ·sqrt(1 + 1/3) = 0.017
    assert EarlyAbort(LOSS, INCUMBENT, [INCUMBENT], until=1)({"frac": 1.0, "train_loss": 3.015}) is None
    assert EarlyAbort(LOSS, INCUMBENT, [INCUMBENT], until=1)({"frac": 1.0, "train_loss": 3.02}) is not None
    assert EarlyAbort(LOSS, INCUMBENT, [INCUMBENT], until=1, z=3)({"frac": 1.0, "train_loss": 3.02}) is None
    # by default the last tenth is not judged: a stop there saves little
    assert EarlyAbort(LOSS, INCUMBENT, [INCUMBENT])({"frac": 0.95, "train_loss": 9.0}) is None
    assert EarlyAbort(LOSS, INCUMBENT, [INCUMBENT])({"frac": 0.9, "train_loss": 9.0}) is not None


def test_without_repeated_incumbent_curves_nothing_is_aborted():
    judge = EarlyAbort(LOSS, INCUMBENT[:1], [INCUMBENT[:1]])
    assert judge({"frac": 0.5, "train_loss": 99.0}) is None
    disabled = EarlyAbort(LOSS, INCUMBENT, [INCUMBENT], enabled=False)
    assert disabled({"frac": 0.5, "train_loss": 99.0}) is None and disabled.curve == [[0.5, 99.0]]


def paced(speed: float, worse: float = 0.0, d: float = 0.0) -> list[list[float]]:
    """A curve of 10 points whose loss falls with the tokens trained: ``speed`` tokens per 10% of
    the budget (the machine's load or the code's speed), ``worse`` per token (the code)."""
    return [[k / 10, 2 + 3 * math.exp(-speed * k / 10) + worse + d, speed * k] for k in range(1, 11)]


# the same code measured three times on a machine whose load changed: a wide spread at equal time
LOADED = [paced(speed, d=d) for speed, d in ((1, -0.01), (2, 0.0), (3, 0.01))]


def stopped(judge: EarlyAbort, curve: list[list[float]]) -> str | None:
    for frac, value, tokens in curve:
        if reason := judge({"frac": frac, "train_loss": value, "tokens": tokens}):
            return reason
    return None


def test_curves_are_read_at_equal_work_too():
    assert value_at(LOADED[1], 3.0, WORK) == pytest.approx((LOADED[1][0][1] + LOADED[1][1][1]) / 2)
    assert curve_noise([LOADED], 0.5) > 0.2  # at equal time: the load
    assert curve_noise([LOADED], 3.0, WORK) < 0.02  # at equal tokens: only the code's own noise
    assert value_at([[0.1, 5.0]], 1.0, WORK) is None  # a curve without a work count


def test_a_candidate_learning_less_per_token_is_stopped_at_equal_work_through_a_busy_machine():
    worse = paced(2, worse=0.5)
    reason = stopped(EarlyAbort(LOSS, LOADED, [LOADED], work="tokens"), worse)
    assert reason is not None and "at equal tokens" in reason, reason
    assert stopped(EarlyAbort(LOSS, LOADED, [LOADED]), worse) is None  # at equal time only: lost in the load


def test_the_machine_or_a_faster_code_does_not_stop_a_candidate_at_equal_work():
    judge = lambda: EarlyAbort(LOSS, LOADED, [LOADED], work="tokens")  # noqa: E731
    assert stopped(judge(), paced(1, d=0.01)) is None  # slowed by the machine, as good per token
    assert stopped(judge(), paced(3, worse=0.2)) is None  # worse per token, but faster: ahead in time
    assert "at equal tokens" in stopped(judge(), paced(3, worse=0.6))  # not fast enough to make up for it


def test_equal_work_has_its_own_higher_bar():
    judge = lambda **bar: EarlyAbort(LOSS, LOADED, [LOADED], work="tokens", catch_up=0, **bar)  # noqa: E731
    at_work = judge().gap(5.0, 0.0, WORK)  # the incumbent's mean and spread at 5 tokens

    def slow(sigmas: float) -> dict:  # half the budget, 5 tokens: behind the mean at equal time
        return {"frac": 0.5, "train_loss": at_work.reference + sigmas * at_work.spread, "tokens": 5.0}

    assert judge().gap(0.5, slow(0)["train_loss"], FRAC).behind > 0
    assert judge()(slow(1.75)) is None  # beyond z (1.5), within z_work (2)
    assert "at equal tokens" in judge()(slow(2.25))
    assert "at equal tokens" in judge(z_work=1.5)(slow(1.75))


def test_a_candidate_learning_less_per_token_is_stopped_on_a_loaded_machine(tmp_path, monkeypatch, scripted):
    root = command_workspace(tmp_path / "paced", PACED_EVALUATE)
    monkeypatch.chdir(root)
    configure(root, "seed: true\ncurve: {key: train_loss, work: tokens}\n")
    # 0.41 worse at every token count: within the load's spread at equal time (σ about 0.5)
    scripted.append({"model.py": MODEL.replace("X = 3.0", "X = 3.15"), "_description": "learns less"})
    result = invoke("run", "--agent", "scripted", "--max-experiments", "1", "--tag", "t")
    assert result.exit_code == 0, result.output
    baseline, worse = History(root / ".autoresearch" / "history.db").experiments("t")
    assert [len(point) for point in baseline["curves"]["samples"][2]] == [3] * 20  # frac, loss, tokens
    assert worse["status"] == "discard" and worse["metric"] is None
    assert "at equal tokens" in worse["reason"] and "at equal time" in worse["reason"], worse["reason"]


def row(number: int, status: str, samples: list, again: list = ()) -> dict:
    """A ledger row as ``Evidence`` reads it: each sample a (metric, curve) pair; ``again``: the
    incumbent's samples measured in the same experiment."""
    return {
        "number": number, "status": status, "reason": None, "gain": 0.1 if status == "keep" else None,
        "samples": [s for s, _ in samples], "incumbent_samples": [s for s, _ in again],
        "curves": {"samples": [c for _, c in samples], "incumbent_samples": [c for _, c in again]},
    }  # fmt: skip


def test_the_incumbents_remeasurements_refresh_the_spread_after_a_busy_baseline():
    """A baseline measured while the machine was busy leaves a wide spread at equal time; the
    incumbent's drift re-measurements, one per experiment, then narrow it to the machine's now."""
    quiet = [paced(2, d=d) for d in (-0.006, 0.004, -0.002, 0.006, 0.0, -0.004, 0.002, -0.001)]
    rows = [row(0, "baseline", [(2.0, curve) for curve in LOADED])]
    for number, again in enumerate(quiet, 1):  # discards of one sample, the incumbent measured again
        rows.append(row(number, "discard", [(2.2, paced(2, worse=0.2))], [(2.0, again)]))
    busy, refreshed = Evidence.from_rows(rows[:1]), Evidence.from_rows(rows)
    assert curve_noise(busy.curve_groups, 0.5) > 0.2
    assert curve_noise(refreshed.curve_groups, 0.5) < 0.01  # its last 8 curves: the quiet ones
    assert refreshed.recent_curves() == quiet  # and it is compared with them (drift)
    worse = paced(2, worse=0.4)  # equal speed, 0.4 worse: lost in the busy spread, clear once refreshed
    assert stopped(EarlyAbort(LOSS, busy.recent_curves(), busy.curve_groups), worse) is None
    assert stopped(EarlyAbort(LOSS, refreshed.recent_curves(), refreshed.curve_groups), worse) is not None
    # a keep closes the old incumbent's group (with the keep's own re-measurement of it)
    refreshed.add(row(9, "keep", [(1.9, paced(2, worse=-0.1))], [(2.0, paced(2))]))
    assert [len(group) for group in refreshed.curve_groups] == [3 + 8 + 1, 1]
