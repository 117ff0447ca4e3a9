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
        ("target: command\nedit: model.py\nrun: x\nmetric: m\ncurve: {key: l, work: 3}\n", "'curve' must"),
        ("target: command\nedit: model.py\nrun: x\nmetric: m\ncurve: {key: l, pace: t}\n", "'curve' must"),
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


def test_patterns_keep_star_inside_one_folder():
    from autoresearch.workspace import matches

    assert matches("a.py", ["*.py"]) and not matches("src/a.py", ["*.py"])
    assert matches("src/a.py", ["src/*.py"]) and not matches("src/sub/b.py", ["src/*.py"])
    assert matches("a.py", ["**/*.py"]) and matches("src/sub/b.py", ["**/*.py"])
    assert matches("src/sub/b.py", ["src/**"]) and not matches("srcx/b.py", ["src/**"])


def test_check_lists_the_files_each_pattern_resolves_to(tmp_path, monkeypatch):
    files = {"model.py": MODEL, "src/a.py": "A = 1\n", "src/sub/b.py": "B = 2\n"}
    root = make_repo(tmp_path / "r", {**files, "evaluate.py": "print('---'); print('loss: 1')\n"})
    monkeypatch.chdir(root)
    run = f"{sys.executable} evaluate.py"
    result = invoke(
        "init", "command", "--edit", "src/*.py", "--protect", "*.py", "--run", run, "--metric", "loss"
    )
    assert result.exit_code == 0, result.output
    out = invoke("check").output
    assert "editable src/*.py: src/a.py\n" in out
    assert "protected *.py: evaluate.py, model.py\n" in out
    assert "protected autoresearch.yaml: autoresearch.yaml\n" in out


def test_a_file_both_editable_and_protected_is_refused_at_init_and_run(repo):
    args = ["--run", "python evaluate.py", "--metric", "loss"]
    result = invoke("init", "command", "--edit", "*.py", "--protect", "evaluate.py", *args)
    assert result.exit_code == 1
    assert (
        "Error: evaluate.py is both editable and protected; remove it from 'edit' or 'protect'"
        in result.output
    )
    assert not (repo / "autoresearch.yaml").exists()

    assert invoke("init", "command", "--edit", "*.py", *args).exit_code == 0
    config = yaml.safe_load((repo / "autoresearch.yaml").read_text())
    (repo / "autoresearch.yaml").write_text(yaml.safe_dump({**config, "protect": ["model.py"]}))
    git(repo, "commit", "-qam", "protect model.py too")
    result = invoke("run", "--agent", "mutate", "--tag", "t")
    assert result.exit_code == 1 and "model.py is both editable and protected" in result.output
    assert git(repo, "branch", "--show-current") == "main"


def test_an_editable_file_with_a_non_ascii_name_works(tmp_path, monkeypatch, scripted):
    evaluate = "import runpy\nprint('---')\nprint(f\"loss: {runpy.run_path('naïve.py')['X']}\")\n"
    root = make_repo(tmp_path / "r", {"naïve.py": "X = 3.0\n", "evaluate.py": evaluate})
    monkeypatch.chdir(root)
    run = f"{sys.executable} evaluate.py"
    result = invoke(
        "init", "command", "--edit", "naïve.py", "--protect", "evaluate.py", "--run", run, "--metric", "loss"
    )
    assert result.exit_code == 0, result.output
    scripted.append({"naïve.py": "X = 1.0\n", "_description": "smaller X"})
    result = invoke(
        "run", "--agent", "scripted", "--tag", "t", "--max-experiments", "1", "--accept", "strict"
    )
    assert result.exit_code == 0, result.output
    from autoresearch.history import History

    rows = History(root / ".autoresearch" / "history.db").experiments("t")
    assert [(r["status"], r["metric"]) for r in rows] == [("baseline", 3.0), ("keep", 1.0)]


def test_init_in_a_bare_repository_is_one_line(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    monkeypatch.chdir(tmp_path / "bare.git")
    result = invoke("init", "command", "--edit", "model.py", "--run", "x", "--metric", "loss")
    assert result.exit_code == 1
    assert "is a bare git repository (no working tree); clone it (git clone" in result.output
