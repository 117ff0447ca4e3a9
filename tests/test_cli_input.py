"""Bad command-line input: one line that says what to do, and nothing run or written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autoresearch.history import History

from conftest import git, invoke

LEDGER = ".autoresearch/history.db"


@pytest.mark.parametrize(
    "args",
    [
        ["--budget", "-5"],
        ["--budget", "0"],
        ["--max-cost", "-2"],
        ["--baseline-runs", "-1"],
        ["--baseline-runs", "0"],
        ["--min-delta", "-1"],
        ["--memory-limit", "0"],
        ["--log-limit", "0"],
        ["--max-experiments", "-1"],
        ["--max-hours", "0"],
        ["--max-turns", "0"],
        ["--agent-timeout", "-1"],
        ["--seed", "-3"],
    ],
    ids=lambda args: " ".join(args),
)
def test_numeric_options_out_of_range_are_refused_before_anything_runs(toy, args):
    result = invoke("run", "--agent", "mutate", "--tag", "t", *args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[0]}'" in result.output and "is not in the range" in result.output
    assert not (toy / LEDGER).exists()


def test_init_and_check_refuse_a_budget_that_is_not_positive(toy):
    assert "Invalid value for '--budget'" in invoke("check", "--budget", "-1").output
    result = invoke(
        "init", "command", "x", "--edit", "m.py", "--run", "true", "--metric", "m", "--budget", "0"
    )
    assert result.exit_code == 2 and "Invalid value for '--budget'" in result.output


@pytest.mark.parametrize("tag", ["my run", "a..b", "x.lock", "a~1", "a/b", "a:b", ""])
def test_run_tags_git_cannot_name_are_one_line(toy, tag):
    result = invoke("run", "--agent", "mutate", "--tag", tag, "--max-experiments", "0")
    assert result.exit_code == 2, result.output
    assert f"{tag!r} cannot be a run tag: use letters, digits" in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [
        result.output.strip().splitlines()[-1]
    ]
    assert not (toy / LEDGER).exists()


def test_run_takes_run_and_log_show_take_tag(toy):
    result = invoke("run", "--agent", "mutate", "--run", "t", "--max-experiments", "0", "--accept", "strict")
    assert result.exit_code == 0, result.output
    assert git(toy, "branch", "--show-current") == "autoresearch/t"
    assert "run t (command, agent mutate)" in invoke("log", "--tag", "t").output
    assert "experiment 0 of run t: baseline" in invoke("show", "0", "--tag", "t").output


def test_environment_variables_set_the_limits(toy, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_MAX_EXPERIMENTS", "1")
    monkeypatch.setenv("AUTORESEARCH_BASELINE_RUNS", "1")
    monkeypatch.setenv("AUTORESEARCH_BUDGET", "7")
    monkeypatch.setenv("AUTORESEARCH_ACCEPT", "strict")  # noise would need two baseline runs
    result = invoke("run", "--agent", "mutate", "--tag", "t")
    assert result.exit_code == 0, result.output
    history = History(toy / LEDGER)
    assert [row["status"] for row in history.experiments("t")][0] == "baseline"
    assert len(history.experiments("t")) == 2
    assert history.run("t")["options"]["budget"] == 7


def test_sql_refuses_to_attach_or_vacuum_into_a_new_file(toy, tmp_path):
    for query in (f"attach database '{tmp_path / 'new.db'}' as x", f"vacuum into '{tmp_path / 'copy.db'}'"):
        result = invoke("sql", query)
        assert result.exit_code == 1
        assert "this command only reads: ATTACH and VACUUM INTO are refused" in result.output
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "copy.db").exists()


def test_sql_without_rows_prints_the_header(toy):
    result = invoke("sql", "select number, status from experiments where status = 'keep'")
    assert result.exit_code == 0 and result.output == "number  status\n"


def test_a_closed_pipe_ends_log_quietly(toy):
    assert (
        invoke(
            "run", "--agent", "mutate", "--tag", "t", "--max-experiments", "0", "--accept", "strict"
        ).exit_code
        == 0
    )
    reader = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "log"],
        cwd=toy,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reader.stdout.close()  # like `| head -1` having read its line and gone: every write fails
    stderr = reader.stderr.read().decode()
    reader.wait()
    assert "Broken pipe" not in stderr and "Error" not in stderr, stderr
