"""Bad output from agents and evaluators is recorded and the loop goes on; bad user input is one line."""

import sys

from autoresearch.history import History

from conftest import MODEL, configure, git, invoke, make_repo


def rows(root):
    return History(root / ".autoresearch" / "history.db").experiments("t")


def test_binary_and_huge_changes_are_invalid(toy, scripted):
    def binary(brief):
        (brief.root / "model.py").write_bytes(b"X = 1\x00\x01\x02\n")
        from autoresearch import Proposal

        return Proposal("binary")

    scripted += [binary, {"model.py": MODEL + "# " + "x" * 1_100_000 + "\n", "_description": "huge"}]
    invoke("run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t")
    got = rows(toy)
    assert (got[1]["status"], got[1]["reason"]) == ("invalid", "binary change to an editable file")
    assert got[2]["status"] == "invalid" and got[2]["reason"].startswith("change too large")


def test_evaluator_that_exhausts_memory_or_floods_the_log(toy, scripted):
    scripted += [
        {
            "model.py": MODEL + "\nhog = bytearray(600 * 2**20)\nimport time\ntime.sleep(20)\n",
            "_description": "hog",
        },
        {
            "model.py": MODEL + "\nimport sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
            "_description": "spam",
        },
    ]
    result = invoke(
        "run",
        "--agent",
        "scripted",
        "--max-experiments",
        "2",
        "--tag",
        "t",
        "--memory-limit",
        "300",
        "--log-limit",
        "2",
    )
    assert result.exit_code == 0, result.output
    got = rows(toy)
    assert got[1]["status"] == "crash" and got[1]["reason"].startswith("memory")
    assert got[2]["status"] == "crash" and "log file size limit" in got[2]["reason"]


def test_in_place_target_needs_an_existing_repository(tmp_path, monkeypatch):
    (tmp_path / "model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    result = invoke("init", "command", "--edit", "model.py", "--run", "x", "--metric", "loss")
    assert result.exit_code == 1 and "is not a git repository; run 'git init'" in result.output
    assert not (tmp_path / ".git").exists()


def test_baseline_failure_stops_with_a_pointer_to_the_log(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "r", {"model.py": MODEL, "evaluate.py": "print('no summary here')\n"})
    monkeypatch.chdir(root)
    invoke(
        "init", "command", "--edit", "model.py", "--run", f"{sys.executable} evaluate.py", "--metric", "loss"
    )
    result = invoke("run", "--agent", "mutate", "--tag", "t")
    assert result.exit_code == 1
    assert "the baseline failed (crash: no 'loss:' line after a '---' line" in result.output
    assert History(root / ".autoresearch" / "history.db").pending("t") is None


def test_a_baseline_timeout_says_which_allowance_to_raise(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "r", {"model.py": MODEL, "evaluate.py": "import time\ntime.sleep(60)\n"})
    monkeypatch.chdir(root)
    run = f"{sys.executable} evaluate.py"
    invoke("init", "command", "--edit", "model.py", "--run", run, "--metric", "loss", "--budget", "1")
    configure(root, "startup: 1\nevaluation: 1\n")
    result = invoke("run", "--agent", "mutate", "--tag", "t")
    assert result.exit_code == 1
    assert "the baseline failed (timeout: ran past 33 s (start-up 1 + budget 1 + slack 30" in result.output
    assert "raise the target's start-up (1 s) or evaluation (1 s) allowance" in result.output
    assert "fix the evaluator" not in result.output


def test_reseeding_is_flagged_when_the_harness_owns_the_seed(toy, scripted):

    (toy / "autoresearch.yaml").write_text((toy / "autoresearch.yaml").read_text() + "seed: true\n")
    git(toy, "commit", "-qam", "the harness seeds the evaluator")
    scripted.append({"model.py": "import random\nrandom.seed(1234)\n" + MODEL, "_description": "lucky seed"})
    invoke("run", "--agent", "scripted", "--max-experiments", "1", "--tag", "t")
    got = rows(toy)[1]
    assert (got["status"], got["reason"]) == (
        "invalid",
        "changes the random seed; the harness sets it (AUTORESEARCH_SEED)",
    )
