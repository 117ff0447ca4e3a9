"""Drift: a stale incumbent is re-measured; a shift beyond the noise warns and is recorded."""

from autoresearch.history import History

from conftest import MODEL, command_workspace, configure, invoke

# From its fifth run on, every measurement is 0.5 worse (a throttled machine); it reports its speed.
DRIFTING_EVALUATE = """\
import os, random
from pathlib import Path
import model
# The sandbox lets a measurement write only its own checkout: count the earlier ones in the logs.
logs = Path(os.environ["DRIFT_LOGS"]).glob("*.log")
runs = 1 + sum(log.read_text().splitlines().count("---") for log in logs)
rng = random.Random(int(os.environ["AUTORESEARCH_SEED"]))
slow = 0.5 if runs >= 5 else 0.0
print("---")
print(f"loss: {model.score() + slow + rng.gauss(0, 0.01):.6f}")
print(f"tokens_per_second: {500 if slow else 1000}")
"""


def test_a_stale_incumbent_is_remeasured_and_drift_is_recorded(tmp_path, monkeypatch, scripted):
    root = command_workspace(tmp_path / "drifting", DRIFTING_EVALUATE)
    monkeypatch.chdir(root)
    monkeypatch.setenv("DRIFT_LOGS", str(root / ".autoresearch" / "logs" / "t"))
    configure(root, "seed: true\n")
    scripted += [{"model.py": MODEL.replace("X = 3.0", f"X = {x}")} for x in (9.0, 8.0)]  # much worse
    args = ("run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t", "--remeasure-every", "2")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    history = History(root / ".autoresearch" / "history.db")
    baseline, first, second = history.experiments("t")
    assert first["incumbent_samples"] == [] and first["extra_runs"] == 0  # discarded at first look
    assert len(second["incumbent_samples"]) == 1 and second["extra_runs"] == 1  # the drift check
    assert second["incumbent_samples"][0] > baseline["metric"] + 0.4
    assert (
        "warning: the incumbent measures" in result.output and "the machine may be throttled" in result.output
    )
    (event,) = history.run("t")["drift"]
    assert event["number"] == 2 and event["sigmas"] > 10
    assert [baseline["throughput"], first["throughput"]] == [1000, 1000] and second["throughput"] == 500


def test_no_drift_check_when_the_incumbent_was_measured_recently(toy, scripted):
    scripted += [{"model.py": "X = 9.0\nY = 10\n\n\ndef score():\n    return X\n"}]
    result = invoke("run", "--agent", "scripted", "--max-experiments", "1", "--tag", "t")
    assert result.exit_code == 0
    assert "warning" not in result.output
    assert History(toy / ".autoresearch" / "history.db").experiment("t", 1)["incumbent_samples"] == []
