"""The evaluator output protocol: phase deadlines (also under a CPU hog) and progress lines."""

import subprocess
import sys

import pytest

from autoresearch.measure import Runner
from autoresearch.protocol import Allowances, PhaseClock, parse_progress

# An evaluator that speaks the protocol: a slow start-up, timed training of TRAIN seconds (busy,
# by wall clock, like a training loop), then evaluation. Times come from argv.
PHASED = """\
import sys, time
startup, train, evaluate = map(float, sys.argv[1:4])
time.sleep(startup)
print("phase: training", flush=True)
start = time.time()
while time.time() - start < train:
    sum(range(1000))
print("phase: evaluation", flush=True)
time.sleep(evaluate)
print("---")
print("loss: 1.0")
"""


@pytest.fixture
def cpu_hog():
    """Four busy processes on the machine for the test's duration (it has 2 cores)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


def run_phased(tmp_path, startup, train, evaluate, allowances):
    argv = [sys.executable, "-c", PHASED, str(startup), str(train), str(evaluate)]
    return Runner().run(argv, tmp_path, tmp_path / "log", allowances)


def test_a_slow_start_up_does_not_eat_into_training_under_a_cpu_hog(tmp_path, cpu_hog):
    # Start-up takes 45 s against a 2 s allowance (a busy machine): with the old single deadline
    # (budget + overhead = 4 + 12) it was killed; the training clock starts at its phase line.
    result = run_phased(tmp_path, 45, 4, 1, Allowances(budget=4, startup=2, evaluation=10))
    assert result.status == "ok", result.reason


def test_a_run_that_trains_past_its_budget_is_still_stopped(tmp_path, cpu_hog):
    result = run_phased(tmp_path, 0, 120, 0, Allowances(budget=2, startup=60, evaluation=60))
    assert result.status == "timeout"
    assert result.reason.startswith("training ran past the 2 s budget + 30 s slack")
    assert result.seconds < 80  # stopped at its training deadline, not at the whole allowance (154 s)


def test_evaluation_has_its_own_allowance_and_the_reason_says_what_to_do(tmp_path):
    allowances = Allowances(budget=1, startup=30, evaluation=1, hint="raise 'evaluation:'")
    result = run_phased(tmp_path, 0, 1, 60, allowances)
    assert result.status == "timeout"
    assert result.reason == "evaluation ran past its 1 s allowance; raise 'evaluation:'"


def test_a_command_without_phase_lines_keeps_one_deadline(tmp_path):
    allowances = Allowances(budget=1, startup=1, evaluation=1, hint="raise 'startup:'")
    result = Runner().run("sleep 90", tmp_path, tmp_path / "log", allowances)
    assert result.status == "timeout" and result.seconds < 80
    assert result.reason == (
        "ran past 33 s (start-up 1 + budget 1 + slack 30 + evaluation 1) without a 'phase: training' "
        "line; raise 'startup:'"
    )
    assert Runner().run("sleep 2", tmp_path, tmp_path / "log", allowances).status == "ok"


def test_phase_lines_move_forward_only_and_count_once():
    clock = PhaseClock(Allowances(budget=100, startup=10, evaluation=20), started=0.0)
    assert (clock.phase, clock.deadline) == ("start-up", 160.0)
    assert clock.status(now=2.0) == "start-up 2s/160s"
    clock.feed("phase: train", 3.0)  # half a line: nothing yet
    clock.feed("ing\n", 4.0)
    assert (clock.phase, clock.phase_started, clock.deadline) == ("training", 4.0, 134.0)
    clock.feed("phase: training\n", 50.0)  # a repeat does not restart the budget
    assert clock.deadline == 134.0
    clock.feed("phase: evaluation\nphase: training\n", 60.0)  # no way back
    assert (clock.phase, clock.deadline, clock.allowance) == ("evaluation", 80.0, 20.0)
    assert clock.status(now=65.4) == "evaluation 5s/20s"  # the live line, not "[65s/100s]"


def test_a_fixed_deadline_ignores_phase_lines():
    clock = PhaseClock(30.0, started=5.0)
    clock.feed("phase: training\n", 6.0)
    assert (clock.phase, clock.deadline) == ("start-up", 35.0)
    assert clock.overrun() == "ran past its 30 s deadline"


@pytest.mark.parametrize(
    "text, values",
    [
        ("frac=0.40 train_loss=3.412", {"frac": 0.4, "train_loss": 3.412}),
        ("frac=1 acc=0.5 tokens=1e6", {"frac": 1.0, "acc": 0.5, "tokens": 1e6}),
        ("train_loss=3.4", None),  # no frac
        ("frac=0.4 loss=high", None),
        ("frac=0.4 loss", None),
        ("frac=0.4 =3", None),
    ],
)
def test_progress_lines_parse_as_numbers(text, values):
    assert parse_progress(text) == values


def test_progress_reaches_the_callback_which_may_stop_the_command(tmp_path):
    script = (
        "import time\n"
        "for i in range(1, 101):\n"
        "    print(f'progress: frac={i / 100} loss={10 - i / 10}', flush=True)\n"
        "    time.sleep(0.1)\n"
    )
    seen = []

    def watch(progress):
        seen.append(progress)
        return f"stopped at {progress['frac']:.0%}" if progress["frac"] >= 0.2 else None

    result = Runner().run([sys.executable, "-c", script], tmp_path, tmp_path / "log", 60, on_progress=watch)
    assert (result.status, result.reason) == ("aborted", "stopped at 20%")
    assert [p["frac"] for p in seen] == [i / 100 for i in range(1, 21)]
    assert result.seconds < 8  # the remaining 8 s of the command did not run


def test_progress_printed_just_before_exit_is_not_lost(tmp_path):
    seen = []
    script = "print('progress: frac=0.5 loss=2'); print('progress: frac=1 loss=1', end='')"
    result = Runner().run(
        [sys.executable, "-c", script], tmp_path, tmp_path / "log", 30, on_progress=seen.append
    )
    assert result.status == "ok"
    assert seen == [{"frac": 0.5, "loss": 2.0}, {"frac": 1.0, "loss": 1.0}]
