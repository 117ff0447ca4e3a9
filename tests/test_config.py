"""Creating workspaces and reading autoresearch.yaml: bad input gets one line that names the field."""

import sys

import pytest
import yaml

from conftest import MODEL, git, invoke, make_repo


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = make_repo(
        tmp_path / "repo", {"model.py": MODEL, "evaluate.py": "print('---'); print('loss: 1')\n"}
    )
    monkeypatch.chdir(root)
    return root


def test_init_writes_and_commits_the_yaml(repo):
    result = invoke(
        "init",
        "command",
        "--edit",
        "model.py",
        "--run",
        "python evaluate.py",
        "--metric",
        "loss",
        "--direction",
        "higher",
        "--budget",
        "5",
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((repo / "autoresearch.yaml").read_text())
    assert config == {
        "target": "command",
        "edit": ["model.py"],
        "run": "python evaluate.py",
        "metric": "loss",
        "direction": "higher",
        "budget": 5.0,
    }
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / ".autoresearch" / ".gitignore").read_text() == "*\n"
    assert "autoresearch.yaml" in git(repo, "ls-files")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "x", "--metric", "loss"], "field 'edit' is missing"),
        (["--edit", "model.py", "--metric", "loss"], "field 'run' is missing"),
        (["--edit", "model.py", "--run", "x"], "field 'metric' is missing"),
        (["--edit", "nope.py", "--run", "x", "--metric", "loss"], "editable pattern 'nope.py' matches no"),
    ],
)
def test_init_errors_name_the_field(repo, args, message):
    result = invoke("init", "command", *args)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (repo / "autoresearch.yaml").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("target: command\nedit: [model.py\n", "not valid YAML at line"),
        ("- a list\n", "must be a mapping"),
        ("edit: [model.py]\n", "field 'target' is missing"),
        ("target: nope\n", "unknown target 'nope'; known targets: command"),
        ("target: command\nedit: model.py\nrun: x\nmetric: loss\nbudget: soon\n", "field 'budget' must be"),
        ("target: command\nedit: model.py\nrun: x\nmetric: loss\ndirection: up\n", "direction must be"),
        ("target: command\nedit: model.py\nrun: x\nmetric: loss\ncolour: red\n", "unknown field 'colour'"),
    ],
)
def test_bad_yaml_is_one_line(repo, text, message):
    (repo / "autoresearch.yaml").write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "config")
    result = invoke("run", "--agent", "mutate", "--max-experiments", "1")
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_not_a_git_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run")
    assert result.exit_code == 1 and "not inside a workspace" in result.output
    assert invoke("log").exit_code == 1


def test_unknown_agent_lists_known_ones(repo):
    invoke(
        "init", "command", "--edit", "model.py", "--run", f"{sys.executable} evaluate.py", "--metric", "loss"
    )
    result = invoke("run", "--agent", "gpt-9")
    assert result.exit_code == 1 and "unknown agent 'gpt-9'; known agents: " in result.output
    assert "mutate" in result.output


def test_init_refuses_an_existing_workspace(repo):
    invoke("init", "command", "--edit", "model.py", "--run", "x", "--metric", "loss")
    result = invoke("init", "command", "--edit", "model.py", "--run", "x", "--metric", "loss")
    assert result.exit_code == 1 and "already a workspace" in result.output


def test_run_in_place_target_outside_a_workspace_says_to_init(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "command", "--max-experiments", "1")
    assert result.exit_code == 1 and "run 'autoresearch init command ...' there first" in result.output
    assert list(tmp_path.iterdir()) == []
