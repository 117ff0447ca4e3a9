"""The loop end to end on a toy workspace: keep, discard, invalid, crash, timeout, limits."""

import json

from autoresearch.history import History

from conftest import MODEL, command_workspace, configure, git, invoke


def ledger(root):
    return History(root / ".autoresearch" / "history.db")


def rows(root, tag="t"):
    return ledger(root).experiments(tag)


def test_mutate_run_keeps_only_improvements(toy):
    result = invoke("run", "--agent", "mutate", "--max-experiments", "20", "--tag", "t")
    assert result.exit_code == 0, result.output
    assert (
        "measuring the baseline 3 times to estimate the noise (up to about 4 min: 3 x 70 s)" in result.output
    )
    experiments = rows(toy)
    assert [r["number"] for r in experiments] == list(range(21))
    assert experiments[0]["status"] == "baseline"
    kept = [r for r in experiments if r["status"] in ("baseline", "keep")]
    # every keep beats the incumbent before it; the branch head is the best kept commit
    for before, after in zip(kept, kept[1:], strict=False):
        assert after["metric"] < before["metric"]
    best = min(kept, key=lambda r: r["metric"])
    assert git(toy, "rev-parse", "HEAD") == best["commit"]
    assert git(toy, "rev-parse", "--abbrev-ref", "HEAD") == "autoresearch/t"
    # every attempt stays reachable
    for row in experiments[1:]:
        if row["commit"]:
            assert git(toy, "rev-parse", f"refs/autoresearch/t/attempts/{row['number']}") == row["commit"]
    assert git(toy, "status", "--porcelain", "--untracked-files=no") == ""


def test_invalid_changes_are_rejected_and_the_loop_goes_on(toy, scripted):
    better = MODEL.replace("X = 3.0", "X = 2.0")
    scripted += [
        {"evaluate.py": "print('---'); print('loss: 0')", "_description": "cheat"},
        {"README.md": "new file is untracked, so this is empty", "_description": "untracked only"},
        {},  # nothing changed
        {"model.py": "X = (\n", "_description": "broken"},
        {"model.py": better, "_description": "X to 2"},
        {"model.py": MODEL.replace("X = 3.0", "X = 2.0"), "_description": "same again"},
    ]
    result = invoke("run", "--agent", "scripted", "--max-experiments", "6", "--tag", "t")
    assert result.exit_code == 0, result.output
    got = {r["number"]: (r["status"], r["reason"]) for r in rows(toy)}
    assert got[1][0] == "invalid" and "protected" in got[1][1]
    assert got[2] == ("invalid", "empty change: no editable file was modified")
    assert got[3][0] == "invalid" and got[3][1].startswith("empty change")
    assert got[4][0] == "invalid" and "syntax error in model.py" in got[4][1]
    assert got[5][0] == "keep"
    assert got[6] == ("invalid", "empty change: no editable file was modified")  # equals incumbent now
    assert (toy / "README.md").exists()  # untracked files are never deleted
    assert "README.md" not in git(toy, "ls-files")
    assert (toy / "evaluate.py").read_text().startswith("import os")


def test_repeated_diff_is_invalid(toy, scripted):
    worse = MODEL.replace("Y = 10", "Y = 100")
    scripted += [{"model.py": worse, "_description": "a"}, {"model.py": worse, "_description": "a again"}]
    invoke("run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t")
    got = rows(toy)
    assert got[1]["status"] == "discard"
    assert (got[2]["status"], got[2]["reason"]) == ("invalid", "repeats experiment 1 exactly")


def test_min_delta_and_direction(toy, scripted):
    slightly = MODEL.replace("X = 3.0", "X = 2.99")
    scripted.append({"model.py": slightly})
    invoke("run", "--agent", "scripted", "--max-experiments", "1", "--min-delta", "0.1", "--tag", "t")
    assert rows(toy)[1]["status"] == "discard"


def test_crash_and_bad_metric_are_recorded_with_log_tail(toy, scripted):
    scripted += [
        {"model.py": MODEL + "\nraise SystemExit('boom: model exploded')\n", "_description": "crash"},
        {"model.py": MODEL.replace("X = 3.0", "X = float('nan')"), "_description": "nan"},
        {
            "model.py": MODEL.replace("return (X", "print('---');print('loss: 1');return (X"),
            "_description": "twice",
        },
    ]
    result = invoke("run", "--agent", "scripted", "--max-experiments", "3", "--tag", "t")
    assert result.exit_code == 0, result.output
    got = rows(toy)
    assert got[1]["status"] == "crash" and "exit code 1" in got[1]["reason"] and "boom" in got[1]["reason"]
    assert got[2]["status"] == "crash" and "not a finite number" in got[2]["reason"]
    assert got[3]["status"] == "crash" and "printed 2 times" in got[3]["reason"]
    assert all(r["metric"] is None for r in got[1:])
    assert git(toy, "rev-parse", "HEAD") == got[0]["commit"]


def test_timeout_kills_the_evaluator(toy, scripted, monkeypatch):
    monkeypatch.setenv("TOY_SLEEP", "0")
    scripted.append({"model.py": MODEL + "\nimport time\ntime.sleep(600)\n", "_description": "hang"})
    result = invoke("run", "--agent", "scripted", "--max-experiments", "1", "--budget", "0.5", "--tag", "t")
    assert result.exit_code == 0, result.output
    got = rows(toy)[1]
    assert got["status"] == "timeout" and got["reason"].startswith("ran past 50.5 s (start-up 10")
    assert got["measure_seconds"] < 120  # killed at its deadline, not after the 600 s sleep


def test_agent_error_is_recorded_and_loop_goes_on(toy, scripted):
    scripted += [RuntimeError("flaky"), {"model.py": MODEL.replace("Y = 10", "Y = 7")}]
    invoke("run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t")
    got = rows(toy)
    assert (got[1]["status"], got[1]["reason"]) == ("agent_error", "RuntimeError: flaky")
    assert got[2]["status"] == "keep"


def test_resume_continues_numbering_and_limits_count_per_invocation(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "2", "--tag", "t")
    result = invoke("run", "--agent", "mutate", "--max-experiments", "3", "--tag", "t")
    assert "resuming run t" in result.output
    assert [r["number"] for r in rows(toy)] == [0, 1, 2, 3, 4, 5]
    assert len([r for r in rows(toy) if r["status"] == "baseline"]) == 1


def test_max_hours_stops(toy):
    result = invoke("run", "--agent", "mutate", "--max-hours", "0.0000001", "--tag", "t")
    assert result.exit_code == 0
    assert "--max-hours" in result.output


def test_dirty_tree_is_refused(toy):
    (toy / "model.py").write_text(MODEL + "# mine\n")
    result = invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t")
    assert result.exit_code == 1
    assert "uncommitted changes (model.py); commit or stash them first" in result.output
    assert (toy / "model.py").read_text().endswith("# mine\n")


def test_log_json_keys_and_tokens(toy, scripted):
    scripted.append({"model.py": MODEL.replace("Y = 10", "Y = 7"), "_description": "Y to 7"})
    invoke("run", "--agent", "scripted", "--max-experiments", "1", "--tag", "t")
    result = invoke("log", "--json")
    data = json.loads(result.output)
    assert [d["number"] for d in data] == [0, 1]
    assert set(data[1]) == {
        "number",
        "status",
        "reason",
        "metric",
        "description",
        "commit",
        "extras",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    }
    assert data[1]["extras"] == {"memory_gb": 0.5}
    assert (data[1]["input_tokens"], data[1]["output_tokens"], data[1]["cost_usd"]) == (10, 5, 0.01)
    assert "total cost: $0.0100" in invoke("log").output
    assert json.loads(invoke("log", "--status", "keep", "--json").output)[0]["number"] == 1


NOISY_EVALUATE = """\
import os, random
import model
rng = random.Random(int(os.environ["AUTORESEARCH_SEED"]))
print("---")
print(f"loss: {model.score() + rng.gauss(0, 0.05):.6f}")
"""


def test_noise_aware_run_samples_and_confirms(tmp_path, monkeypatch, scripted):
    root = command_workspace(tmp_path / "noisy", NOISY_EVALUATE)
    monkeypatch.chdir(root)
    configure(root, "seed: true\n")
    scripted += [
        {"model.py": MODEL.replace("Y = 10", "Y = 10  # a comment changes nothing"), "_description": "no-op"},
        {"model.py": MODEL.replace("X = 3.0", "X = 1.7"), "_description": "real gain"},
    ]
    result = invoke(
        "run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t", "--baseline-runs", "4"
    )
    assert result.exit_code == 0, result.output
    history = ledger(root)
    got = history.experiments("t")
    assert len(got[0]["samples"]) == 4 and len(got) == 3  # repeats are samples, never rows
    assert 0.01 < history.run("t")["noise"] < 0.2
    assert got[1]["status"] == "discard"
    assert got[2]["status"] == "keep" and got[2]["gain"] > 1
    assert len({r["seed"] for r in got}) == 3
    assert "±0." in invoke("brief").output


def test_strict_policy_is_the_original(toy):
    result = invoke("run", "--agent", "mutate", "--max-experiments", "3", "--accept", "strict", "--tag", "t")
    assert result.exit_code == 0
    assert len(rows(toy)[0]["samples"]) == 1
    assert all(r["extra_runs"] in (None, 0) for r in rows(toy))


def test_a_strict_run_cannot_resume_as_noise_aware(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "1", "--accept", "strict", "--tag", "t")
    result = invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t")
    assert result.exit_code == 1 and "resume it with --accept strict" in result.output
    assert (
        invoke(
            "run", "--agent", "mutate", "--max-experiments", "1", "--accept", "strict", "--tag", "t"
        ).exit_code
        == 0
    )
