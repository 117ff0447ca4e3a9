"""Parallel slots (issue 11): measurements at once, each in its own checkout; one writer of git and
the ledger; per-experiment pending state; stale parents; kill -9 and Ctrl-C with several in flight."""

import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from test_safety import EVALUATE as WAITING
from test_safety import assert_consistent, evaluations, start_run, wait_for

from autoresearch import Proposal
from autoresearch import slots as slots_module
from autoresearch.history import History, Pending

from conftest import MODEL, command_workspace, git, invoke, waiting_workspace

# Sleeps for a while, saying when it started and what its slot gave it.
SLEEPER = """\
import os, time
import model
print(f"start {time.time():.3f}", flush=True)
time.sleep(4)
print(f"end {time.time():.3f}", flush=True)
print("---")
print(f"loss: {model.score():.6f}")
print(f"threads: {os.environ.get('AUTORESEARCH_THREADS', '-')}")
print(f"gpu: {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")
"""

# X and Y far apart, so that changes to each merge cleanly.
SPREAD_MODEL = MODEL.replace("Y = 10\n", "\n\n\n\n\n\nY = 10\n")


@pytest.fixture
def sleeper(tmp_path, monkeypatch):
    root = command_workspace(tmp_path / "ws", SLEEPER, budget=30, **{"model.py": SPREAD_MODEL})
    monkeypatch.chdir(root)
    return root


def spans(root, number):
    """(start, end) of each measurement of experiment ``number``, from its log."""
    text = (root / ".autoresearch" / "logs" / "t" / f"{number}.log").read_text()
    starts = [float(x) for x in re.findall(r"^start (\S+)", text, re.M)]
    ends = [float(x) for x in re.findall(r"^end (\S+)", text, re.M)]
    return list(zip(starts, ends, strict=False))


def test_four_slots_measure_at_once_each_recorded_with_its_slot(sleeper):
    result = invoke(
        "run", "--agent", "mutate", "--tag", "t", "--slots", "4", "--max-experiments", "4",
        "--accept", "strict", "--stale", "discard",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = assert_consistent(sleeper)
    assert [r["number"] for r in rows] == [0, 1, 2, 3, 4]
    first = [spans(sleeper, n)[0] for n in range(1, 5)]
    assert max(s for s, _ in first) < min(e for _, e in first), f"not all 4 overlapped: {first}"
    assert sorted(r["slot"] for r in rows[1:]) == [0, 1, 2, 3]
    assert {r["host"] for r in rows} == {rows[0]["host"]} and rows[0]["host"]
    threads = str(max(1, __import__("os").cpu_count() // 4))
    assert {r["extras"]["threads"] for r in rows[1:]} == {int(threads)}  # each slot's share of the cores
    data = json.loads(invoke("log", "--json").output)
    assert [d["slot"] for d in data[1:]] == [r["slot"] for r in rows[1:]]
    assert "slot" in invoke("log").output.splitlines()[1]
    assert "measured on: slot" in invoke("show", "1").output


def test_one_slot_records_as_before(sleeper):
    """--slots 1 (the default): the loop of old, slot 0, and no slot column or keys."""
    result = invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1", "--accept", "strict")
    assert result.exit_code == 0, result.output
    rows = assert_consistent(sleeper)
    assert [(r["slot"], r["extras"]["threads"]) for r in rows] == [(0, "-"), (0, "-")]
    assert "slot" not in json.loads(invoke("log", "--json").output)[1]
    assert "slot" not in invoke("log").output.splitlines()[1]


def test_devices_give_each_slot_its_gpu(sleeper, monkeypatch):
    monkeypatch.setattr(slots_module, "accelerator_count", lambda: 2)  # this machine has none
    result = invoke(
        "run", "--agent", "mutate", "--tag", "t", "--devices", "cuda:1,cuda:0", "--max-experiments", "2",
        "--accept", "strict", "--stale", "discard",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = assert_consistent(sleeper)
    assert {(r["slot"], r["extras"]["gpu"]) for r in rows[1:]} == {(0, 1), (1, 0)}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--slots", "0"], "0 is not in the range x>=1"),
        (["--devices", "0,1"], "GPU 0 does not exist (this machine has 0)"),
        (["--slots", "3", "--devices", "0,1"], "--slots 3 but --devices names 2"),
        (["--devices", "gpu0"], "'gpu0' is not a GPU index"),
        (["--devices", "0,0"], "a GPU is named twice"),
    ],
)
def test_bad_slots_and_devices_are_one_line(sleeper, args, message):
    result = invoke("run", "--agent", "mutate", "--tag", "t", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert not (sleeper / ".autoresearch" / "history.db").exists() or not History(
        sleeper / ".autoresearch" / "history.db"
    ).experiments("t")


def test_stale_winner_is_measured_again_on_the_new_incumbent(sleeper, scripted):
    scripted.extend(
        [
            {"model.py": SPREAD_MODEL.replace("X = 3.0", "X = 1.7"), "_description": "X"},
            {"model.py": SPREAD_MODEL.replace("Y = 10", "Y = 7"), "_description": "Y"},
        ]
    )
    args = ["--slots", "2", "--ahead", "0", "--max-experiments", "2", "--accept", "strict"]
    result = invoke("run", "--agent", "scripted", "--tag", "t", *args)
    assert result.exit_code == 0, result.output
    rows = assert_consistent(sleeper)
    assert [r["status"] for r in rows] == ["baseline", "keep", "keep"]
    first, second = sorted(rows[1:], key=lambda r: r["finished_at"])
    assert second["reason"].startswith(f"measured again on top of experiment {first['number']}")
    assert second["parent_commit"] == first["commit"]  # kept on top of what it was measured on
    assert len(spans(sleeper, second["number"])) == 2
    model = git(sleeper, "show", "autoresearch/t:model.py")
    assert "X = 1.7" in model and "Y = 7" in model


@pytest.mark.parametrize("stale, status, reason", [
    ("revalidate", "invalid", "conflicts with experiment {kept}, kept meanwhile"),
    ("discard", "discard", "stale: experiment {kept} was kept meanwhile"),
])  # fmt: skip
def test_stale_winner_conflicting_or_discarded(sleeper, scripted, stale, status, reason):
    def better_but_later(brief):  # drafted 2 s after the other, so decided after it
        time.sleep(2)
        (brief.root / "model.py").write_text(SPREAD_MODEL.replace("X = 3.0", "X = 1.7"))
        return Proposal(description="X to 1.7")

    # Both beat the baseline; X = 1.7 beats X = 2.0 too, on the same line.
    scripted.extend([{"model.py": SPREAD_MODEL.replace("X = 3.0", "X = 2.0")}, better_but_later])
    args = ["--slots", "2", "--ahead", "0", "--max-experiments", "2", "--accept", "strict", "--stale", stale]
    assert invoke("run", "--agent", "scripted", "--tag", "t", *args).exit_code == 0
    rows = assert_consistent(sleeper)
    kept = [r for r in rows[1:] if r["status"] == "keep"]
    other = [r for r in rows[1:] if r["status"] != "keep"]
    assert len(kept) == 1 and [r["status"] for r in other] == [status]
    assert other[0]["reason"].startswith(reason.format(kept=kept[0]["number"]))
    assert git(sleeper, "rev-parse", "autoresearch/t") == kept[0]["commit"]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    return waiting_workspace(tmp_path, monkeypatch, WAITING)


def test_kill_9_with_three_in_flight_resumes_cleanly(ws):
    baseline = ["--max-experiments", "0", "--accept", "strict"]
    assert invoke("run", "--agent", "mutate", "--tag", "t", *baseline).exit_code == 0
    (ws / ".slow").write_text("")
    proc = start_run(ws, "--slots", "3", "--ahead", "0", "--accept", "strict")
    wait_for(lambda: evaluations(ws) >= 1 + 3, seconds=90)  # the baseline's, then three at once
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    in_flight = History(ws / ".autoresearch" / "history.db").pendings("t")
    assert [p.number for p in in_flight] == [1, 2, 3] and all(p.phase == "measure" for p in in_flight)
    (ws / ".slow").unlink()
    again = ["--slots", "3", "--max-experiments", "3", "--accept", "strict"]
    result = invoke("run", "--agent", "mutate", "--tag", "t", *again)
    assert result.exit_code == 0, result.output
    for number in (1, 2, 3):
        assert f"experiment {number} was cut short; running it again" in result.output
    rows = assert_consistent(ws)  # contiguous rows, no pending, branch = incumbent, no evaluator left
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    assert not list((ws / ".autoresearch" / "checkouts").glob("draft-*")), "a slot's draft was left"


def test_ctrl_c_stops_every_slot_and_records_each(ws):
    baseline = ["--max-experiments", "0", "--accept", "strict"]
    assert invoke("run", "--agent", "mutate", "--tag", "t", *baseline).exit_code == 0
    (ws / ".slow").write_text("")
    proc = start_run(ws, "--slots", "3", "--ahead", "0", "--accept", "strict")
    wait_for(lambda: evaluations(ws) >= 1 + 3, seconds=90)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    (ws / ".slow").unlink()
    rows = assert_consistent(ws)
    assert [r["status"] for r in rows[1:]] == ["interrupted"] * 3, out
    assert "interrupted by the user" in out


def test_a_limit_lets_what_is_in_flight_finish(sleeper):
    started = time.monotonic()
    args = ["--slots", "2", "--max-hours", "0.0001", "--accept", "strict", "--stale", "discard"]
    result = invoke("run", "--agent", "mutate", "--tag", "t", *args)
    assert result.exit_code == 0, result.output
    rows = assert_consistent(sleeper)
    assert "--max-hours 0.0001 reached" in result.output
    assert all(r["status"] != "interrupted" for r in rows), [r["status"] for r in rows]
    assert len(rows) >= 2 and time.monotonic() - started > 4  # something in flight was measured


def test_m004_migrates_a_ledger_of_the_release_before(tmp_path):
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.executescript((Path(__file__).parent / "fixtures" / "ledger_before_slots.sql").read_text())
    conn.close()
    history = History(path)
    assert [r["slot"] for r in history.experiments("t")] == [None, None]  # measured before slots
    [pending] = history.pendings("t")
    assert (pending.number, pending.phase, pending.commit, pending.pgid) == (2, "measure", "c" * 40, 12345)
    history.set_pending("t", Pending(3, "propose", "a" * 40))  # several in flight now
    assert [p.number for p in history.pendings("t")] == [2, 3]
    history.record({"run": "t", "number": 2, "status": "crash", "slot": 1, "host": "h"})
    assert [p.number for p in history.pendings("t")] == [3]  # only its own pending row goes
    assert (history.experiment("t", 2)["slot"], history.experiment("t", 2)["host"]) == (1, "h")
