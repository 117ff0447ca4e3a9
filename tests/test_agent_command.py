"""The command agent, with small scripts standing in for coding-agent CLIs."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from autoresearch.agent import AgentError, AgentOptions, FatalAgentError
from autoresearch.agents.command import DESCRIPTION_FILE, CommandAgent

from servers.toy import PREPARE, git, make_brief, make_repo


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "ws")


def script(directory: Path, *parts: str, name: str = "agent.py") -> Path:
    """A Python script standing in for a CLI; executable, with this interpreter."""
    path = directory / name
    path.write_text(f"#!{sys.executable}\n" + "\n".join(textwrap.dedent(p) for p in parts))
    path.chmod(0o755)
    return path


def command_for(path: Path, *args: str) -> str:
    return shlex.join([sys.executable, str(path), *args])


EDIT = """
    import sys
    from pathlib import Path
    train = Path("train.py")
    train.write_text(train.read_text().replace("LEARNING_RATE = 0.1", "LEARNING_RATE = 0.05"))
"""


def test_a_command_that_edits(repo, tmp_path):
    agent_script = script(
        tmp_path,
        EDIT,
        """
    brief = sys.stdin.read()
    assert "Edit only these files: train.py." in brief and "Lower the loss" in brief, brief
    print("Reading train.py ...")
    print("Halved the learning rate to damp the loss spikes.")
""",
    )
    agent = CommandAgent(AgentOptions(command=command_for(agent_script)))
    proposal = agent.propose(make_brief(repo))

    assert "LEARNING_RATE = 0.05" in (repo / "train.py").read_text()
    assert proposal.description == "Halved the learning rate to damp the loss spikes."
    assert proposal.note is None
    assert (proposal.input_tokens, proposal.cost_usd) == (0, None)
    assert git(repo, "status", "--porcelain") == " M train.py\n"  # scratch files stay ignored


def test_brief_file_placeholder_and_description_file(repo, tmp_path):
    agent_script = script(
        tmp_path,
        EDIT,
        f"""
    assert sys.stdin.read() == ""
    assert "Lower the loss" in Path(sys.argv[1]).read_text()
    Path("{DESCRIPTION_FILE}").write_text("lower learning rate\\nbecause reasons\\n")
    print("done")
""",
    )
    agent = CommandAgent(AgentOptions(command=command_for(agent_script) + " {brief_file}"))
    proposal = agent.propose(make_brief(repo))
    assert proposal.description == "lower learning rate"
    assert not (repo / DESCRIPTION_FILE).exists()


def test_edits_outside_the_editable_files_are_reverted(repo, tmp_path):
    (repo / "scratch.txt").write_text("the user's own untracked file\n")
    agent_script = script(
        tmp_path,
        EDIT,
        """
    import subprocess
    Path("prepare.py").write_text("DATA = 'easy'\\n")
    Path("notes.txt").write_text("ideas\\n")
    Path("sub").mkdir()
    Path("sub/new.py").write_text("x = 1\\n")
    subprocess.run(["git", "add", "notes.txt"], check=True)
    print("made the data easier")
""",
    )
    proposal = CommandAgent(AgentOptions(command=command_for(agent_script))).propose(make_brief(repo))

    assert (repo / "prepare.py").read_text() == PREPARE
    assert not (repo / "notes.txt").exists() and not (repo / "sub/new.py").exists()
    assert (repo / "scratch.txt").exists()
    assert "LEARNING_RATE = 0.05" in (repo / "train.py").read_text()
    assert proposal.note == ("reverted changes outside the editable files: notes.txt, prepare.py, sub/new.py")


def test_commits_made_by_the_agent_are_undone(repo, tmp_path):
    head = git(repo, "rev-parse", "HEAD")
    agent_script = script(
        tmp_path,
        EDIT,
        """
    import subprocess
    identity = ["-c", "user.name=a", "-c", "user.email=a@example.com"]
    subprocess.run(["git", *identity, "commit", "-qam", "lower lr"], check=True)
    print("lower lr")
""",
    )
    proposal = CommandAgent(AgentOptions(command=command_for(agent_script))).propose(make_brief(repo))
    assert git(repo, "rev-parse", "HEAD") == head
    assert "LEARNING_RATE = 0.05" in (repo / "train.py").read_text()
    assert proposal.note.startswith("undid the agent's commits")


def test_a_hanging_command_is_stopped_with_its_whole_group(repo, tmp_path):
    pid_file = tmp_path / "child.pid"
    agent_script = script(
        tmp_path,
        f"""
    import subprocess, time
    child = subprocess.Popen(["sleep", "60"])
    open({str(pid_file)!r}, "w").write(str(child.pid))
    time.sleep(60)
""",
    )
    agent = CommandAgent(AgentOptions(command=command_for(agent_script), timeout=1))
    with pytest.raises(AgentError, match="timed out after 1 s"):
        agent.propose(make_brief(repo))
    assert not alive(int(pid_file.read_text()))


def alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may not reap orphans at once)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_json_usage_report_is_parsed(repo, tmp_path):
    report = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Halved the learning rate.\n\nThe loss curve was noisy.",
        "total_cost_usd": 0.0421,
        "usage": {
            "input_tokens": 12,
            "output_tokens": 800,
            "cache_creation_input_tokens": 5000,
            "cache_read_input_tokens": 20000,
        },
    }
    agent_script = script(tmp_path, EDIT, f"\nprint({json.dumps(json.dumps(report))})\n")
    proposal = CommandAgent(AgentOptions(command=command_for(agent_script))).propose(make_brief(repo))
    assert proposal.description == "Halved the learning rate."
    assert (proposal.input_tokens, proposal.output_tokens) == (12, 800)
    assert (proposal.cache_write_tokens, proposal.cache_read_tokens) == (5000, 20000)
    assert proposal.cost_usd == 0.0421


def test_codex_json_events_are_parsed(repo, tmp_path, caplog):
    events = [
        {"type": "thread.started", "thread_id": "t1"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "i0", "type": "reasoning", "text": "hmm"}},
        {
            "type": "item.completed",
            "item": {"id": "i1", "type": "agent_message", "text": "Lower LR"},
        },
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 3000, "cached_input_tokens": 1000, "output_tokens": 300},
        },
    ]
    lines = "\n".join(json.dumps(e) for e in events)
    agent_script = script(tmp_path, EDIT, f"\nprint({lines!r})\n")
    agent = CommandAgent(AgentOptions(command=command_for(agent_script), model="gpt-unpriced"))
    proposal = agent.propose(make_brief(repo))
    assert proposal.description == "Lower LR"
    assert (proposal.input_tokens, proposal.cache_read_tokens) == (2000, 1000)
    assert (proposal.output_tokens, proposal.cost_usd) == (300, None)


def test_a_failing_command_is_an_agent_error(repo, tmp_path):
    agent_script = script(tmp_path, "raise ValueError('out of ideas')\n")
    agent = CommandAgent(AgentOptions(command=command_for(agent_script)))
    with pytest.raises(AgentError, match=r"\(exit 1\): ValueError: out of ideas$"):
        agent.propose(make_brief(repo))


def test_a_missing_cli_stops_the_run(repo):
    agent = CommandAgent(AgentOptions(command="no-such-agent-cli --go"))
    with pytest.raises(FatalAgentError, match="not found"):
        agent.propose(make_brief(repo))


def test_no_command_stops_the_run(repo):
    with pytest.raises(FatalAgentError, match="--agent-command"):
        CommandAgent().propose(make_brief(repo))


def fake_cli(tmp_path: Path, monkeypatch, name: str, output: str, exit_code: int = 0) -> Path:
    """An executable ``name`` first on PATH that records its argv and stdin, then prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / f"{name}.json"
    script(
        bin_dir,
        EDIT,
        f"""
    import json
    json.dump({{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}, open({str(record)!r}, "w"))
    print({output!r})
    sys.exit({exit_code})
""",
        name=name,
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return record


def test_the_claude_preset_runs_headless_with_editing_tools_only(repo, tmp_path, monkeypatch):
    output = json.dumps({"type": "result", "is_error": False, "result": "lower lr"})
    record = fake_cli(tmp_path, monkeypatch, "claude", output)
    options = AgentOptions(command="claude", model="claude-opus-5", max_turns=7)
    proposal = CommandAgent(options).propose(make_brief(repo))

    called = json.loads(record.read_text())
    argv = " ".join(called["argv"])
    assert argv.startswith("-p --output-format json --permission-mode acceptEdits")
    assert "--allowedTools Read,Edit,Write,Glob,Grep" in argv
    assert "--max-turns 7" in argv and "--model claude-opus-5" in argv
    assert "dangerously" not in argv and "bypass" not in argv
    assert "Lower the loss" in called["stdin"]
    assert proposal.description == "lower lr"


def test_the_codex_preset_runs_exec_mode_with_json(repo, tmp_path, monkeypatch):
    output = json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "x"}})
    record = fake_cli(tmp_path, monkeypatch, "codex", output)
    CommandAgent(AgentOptions(extra={"preset": "codex"})).propose(make_brief(repo))
    called = json.loads(record.read_text())
    assert called["argv"] == ["exec", "--json", "--sandbox", "workspace-write", "-"]
    assert "Lower the loss" in called["stdin"]


def test_a_rejected_login_stops_the_run(repo, tmp_path, monkeypatch):
    failure = {"type": "result", "is_error": True, "result": "Invalid API key · Please run /login"}
    fake_cli(tmp_path, monkeypatch, "claude", json.dumps(failure), exit_code=1)
    with pytest.raises(FatalAgentError, match="could not log in: .*Invalid API key"):
        CommandAgent(AgentOptions(command="claude")).propose(make_brief(repo))


def test_a_preset_that_is_not_installed_stops_the_run(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FatalAgentError, match="claude is not on PATH"):
        CommandAgent(AgentOptions(command="claude")).propose(make_brief(repo))


def test_announce():
    assert CommandAgent(AgentOptions(command="codex")).announce() == (
        "agent: command (preset codex), timeout 1800 s"
    )
    assert "aider --yes" in CommandAgent(AgentOptions(command="aider --yes")).announce()
