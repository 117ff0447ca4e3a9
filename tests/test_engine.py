"""The loop end to end on a toy workspace: keep, discard, invalid, crash, timeout, limits."""

import json
from datetime import datetime

from autoresearch.history import History

from conftest import EVALUATE, MODEL, command_workspace, configure, git, invoke


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
    assert git(toy, "rev-parse", "autoresearch/t") == best["commit"]
    # the user's checkout was never touched: still on main, at the commit the run started from
    assert git(toy, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(toy, "rev-parse", "HEAD") == experiments[0]["commit"]
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
    assert "README.md" not in git(toy, "ls-files", "--with-tree", "autoresearch/t")
    assert git(toy, "show", "autoresearch/t:evaluate.py").startswith("import os")
    assert git(toy, "status", "--porcelain") == ""  # the agent edits its own checkout, not the user's


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
    assert rows(toy)[1]["status"] == "discard"  # better, but by less than --min-delta
    config = toy / "autoresearch.yaml"
    config.write_text(config.read_text().replace("direction: lower", "direction: higher"))
    git(toy, "commit", "-qam", "higher is better")
    lower, higher = MODEL.replace("X = 3.0", "X = 2.0"), MODEL.replace("X = 3.0", "X = 4.0")
    scripted += [{"model.py": lower}, {"model.py": higher}]
    args = ("--agent", "scripted", "--accept", "strict", "--max-experiments", "2", "--tag", "up")
    assert invoke("run", *args).exit_code == 0
    got = rows(toy, "up")
    went_up = [(r["status"], r["metric"] > got[0]["metric"]) for r in got[1:]]
    assert went_up == [("discard", False), ("keep", True)]  # lower loss discarded, higher kept


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
    assert git(toy, "rev-parse", "autoresearch/t") == got[0]["commit"]


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
    assert "a run starts from your last commit" in result.output
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
        "agent",
        "model",
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


def test_an_agent_with_nothing_left_ends_the_run_with_one_line(tmp_path, monkeypatch):
    """mutate's only one-step change (N 1 -> 2) is worse; then it has nothing left: the run ends."""
    evaluate = "import model\nprint('---')\nprint(f'loss: {model.N}')\n"
    root = command_workspace(tmp_path / "one", evaluate, **{"model.py": "N = 1\n"})
    monkeypatch.chdir(root)
    result = invoke("run", "--agent", "mutate", "--accept", "strict", "--max-experiments", "50", "--tag", "t")
    assert result.exit_code == 0, result.output
    assert "stopped: agent mutate has nothing left to propose (every one-step change" in result.output
    assert [(r["number"], r["status"]) for r in rows(root)] == [(0, "baseline"), (1, "discard")]
    assert ledger(root).pending("t") is None
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""


def test_agent_errors_in_a_row_back_off_then_stop_the_run(toy, scripted, monkeypatch):
    from autoresearch import engine

    monkeypatch.setattr(engine, "AGENT_BACKOFF_SECONDS", (0.5, 1.0))
    scripted += [RuntimeError("down")] * 5 + [{"model.py": MODEL.replace("Y = 10", "Y = 7")}]
    result = invoke("run", "--agent", "scripted", "--max-experiments", "10", "--tag", "t")
    assert result.exit_code == 1, result.output
    assert "agent scripted failed 3 times in a row (last: RuntimeError: down)" in result.output
    errors = [r for r in rows(toy) if r["number"] > 0]
    assert [r["status"] for r in errors] == ["agent_error"] * 3  # then it stopped, no more rows
    started = [datetime.fromisoformat(r["started_at"]) for r in errors]
    gaps = [(b - a).total_seconds() for a, b in zip(started, started[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0  # waited longer after each error


def test_an_agent_error_between_successes_does_not_count_towards_the_stop(toy, scripted, monkeypatch):
    from autoresearch import engine

    monkeypatch.setattr(engine, "AGENT_BACKOFF_SECONDS", (0.1,))
    good = {"model.py": MODEL.replace("Y = 10", "Y = 9")}
    scripted += [RuntimeError("a"), good, RuntimeError("b"), {"model.py": MODEL.replace("Y = 10", "Y = 8")}]
    result = invoke(
        "run", "--agent", "scripted", "--accept", "strict", "--max-experiments", "4", "--tag", "t"
    )
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in rows(toy)][1:] == ["agent_error", "keep", "agent_error", "keep"]


def test_a_change_back_to_measured_code_is_a_repeat(toy, scripted):
    """A different diff that leads to code measured before (here: the baseline's) is not measured again."""
    better = MODEL.replace("X = 3.0", "X = 2.0")
    scripted += [
        {"model.py": better, "_description": "X 3 -> 2"},
        {"model.py": MODEL, "_description": "X 2 -> 3"},
    ]
    result = invoke(
        "run", "--agent", "scripted", "--accept", "strict", "--max-experiments", "2", "--tag", "t"
    )
    assert result.exit_code == 0, result.output
    got = rows(toy)
    assert got[1]["status"] == "keep"
    assert (got[2]["status"], got[2]["reason"]) == ("invalid", "repeats experiment 0 exactly")
    assert got[2]["commit"] is None and got[2]["measure_seconds"] is None
    assert got[0]["tree"] == git(toy, "rev-parse", f"{got[0]['commit']}^{{tree}}")


def test_a_failed_baseline_is_recorded_and_the_next_try_follows_it(tmp_path, monkeypatch):
    # The evaluator runs in a checkout of the commit: it looks for 'broken' in the user's workspace.
    broken = "os.path.join(os.environ['TEST_WORKSPACE'], 'broken')"
    evaluate = f"import os, sys\nif os.path.exists({broken}):\n    sys.exit('evaluator broken')\n" + EVALUATE
    root = command_workspace(tmp_path / "w", evaluate, **{".gitignore": "broken\n"})
    monkeypatch.chdir(root)
    monkeypatch.setenv("TEST_WORKSPACE", str(root))
    (root / "broken").write_text("")
    result = invoke("run", "--agent", "mutate", "--tag", "t")
    assert result.exit_code == 1 and "the baseline failed (crash: exit code 1" in result.output
    assert [(r["number"], r["status"]) for r in json.loads(invoke("log", "--json").output)] == [(0, "crash")]
    assert "evaluator broken" in invoke("log").output
    (root / "broken").unlink()
    assert invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1").exit_code == 0
    got = rows(root)
    assert [(r["number"], r["status"]) for r in got[:2]] == [(0, "crash"), (1, "baseline")]
    assert got[0]["log_path"] != got[1]["log_path"]
    assert "untouched baseline" not in ledger(root).descriptions("t")


def test_the_run_keeps_its_metric_the_baseline_its_start_and_logs_survive_a_move(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_SLEEP", "0.5")
    invoke("run", "--agent", "mutate", "--max-experiments", "1", "--baseline-runs", "2", "--tag", "t")
    run = ledger(toy).run("t")
    assert (run["metric"], run["direction"]) == ("loss", "lower")
    baseline = rows(toy)[0]
    took = datetime.fromisoformat(baseline["finished_at"]) - datetime.fromisoformat(baseline["started_at"])
    assert took.total_seconds() >= 1.0  # two measurements of at least 0.5 s each
    assert baseline["log_path"] == ".autoresearch/logs/t/0.log"
    moved = tmp_path / "moved"
    toy.rename(moved)
    monkeypatch.chdir(moved)
    shown = invoke("show", "1").output
    assert f"log tail ({moved}/.autoresearch/logs/t/1.log)" in shown and "training... done" in shown


def test_a_run_from_before_trees_were_recorded_finds_repeats_of_its_old_rows(toy, scripted):
    better = MODEL.replace("X = 3.0", "X = 2.0")
    scripted += [{"model.py": better}]
    invoke("run", "--agent", "scripted", "--accept", "strict", "--max-experiments", "1", "--tag", "t")
    ledger(toy).db.execute("update experiments set tree = null")  # as the release before m002 wrote it
    scripted += [{"model.py": MODEL, "_description": "back to the start"}]
    invoke("run", "--agent", "scripted", "--accept", "strict", "--max-experiments", "1", "--tag", "t")
    got = rows(toy)
    assert (got[2]["status"], got[2]["reason"]) == ("invalid", "repeats experiment 0 exactly")
    assert got[0]["tree"] == git(toy, "rev-parse", f"{got[0]['commit']}^{{tree}}")
