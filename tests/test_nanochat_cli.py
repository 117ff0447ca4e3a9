"""`autoresearch run` on nanochat_bpb's CPU preset with every agent (slow): the whole original loop."""

from __future__ import annotations

import re
import shlex
import sys

import pytest

from autoresearch.history import History

from conftest import invoke
from nanochat_support import TINY, write_corpus
from servers.messages_server import MessagesServer, message, tool_use
from servers.openai_server import OpenAIServer, completion, edit

pytestmark = pytest.mark.slow
RUN = ["--tag", "t", "--budget", "5", "--accept", "strict", "--api-retry-seconds", "5"]
EXTRAS = ("training_seconds", "num_steps", "total_tokens_M", "num_params_M", "peak_rss_mb", "depth")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One tiny CPU workspace with prepared data, shared by the agents' runs (one run tag)."""
    tmp = tmp_path_factory.mktemp("nanochat")
    data = write_corpus(tmp / "corpus")
    options = [f"-o{key}={value}" for key, value in TINY.items() if key != "preset"]
    result = invoke("init", "nanochat_bpb", str(tmp / "ws"), "--preset", "cpu", "--data", str(data), *options)
    assert result.exit_code == 0, result.output
    return tmp / "ws"


@pytest.fixture
def ws(workspace, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CLIMBMIX_URL", "http://127.0.0.1:9")
    monkeypatch.chdir(workspace)
    return workspace


def rows(root):
    return History(root / ".autoresearch" / "history.db").experiments("t")


def set_constant(root, name: str, value: str) -> tuple[str, str]:
    """The current line of a train.py constant and the same line with a new value."""
    line = re.search(rf"^{name} = .*$", (root / "train.py").read_text(), re.M).group(0)
    return line, re.sub(r"= \S+", f"= {value}", line, count=1)


def test_1_mutate_baseline_and_two_experiments(ws):
    result = invoke("run", "--agent", "mutate", "--max-experiments", "2", *RUN)
    assert result.exit_code == 0, result.output
    got = rows(ws)
    assert [r["number"] for r in got] == [0, 1, 2] and got[0]["status"] == "baseline"
    assert got[0]["metric"] > 0
    for row in got:
        if row["status"] in ("baseline", "keep", "discard"):
            assert all(key in row["extras"] for key in EXTRAS), row["extras"]


def test_2_anthropic_agent(ws, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")

    def claude(request):
        last = request.body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return message(tool_use("submit", {"description": "shorter warm-down"}))(request)
        old, new = set_constant(ws, "WARMDOWN_RATIO", "0.35")
        call = {"path": "train.py", "old_text": old, "new_text": new}
        return message(tool_use("replace_in_file", call))(request)

    with MessagesServer(fallback=claude) as server:
        result = invoke(
            "run", "--agent", "anthropic", "--max-experiments", "1", "--base-url", server.url, *RUN
        )
    assert result.exit_code == 0, result.output
    last = rows(ws)[-1]
    assert last["description"] == "shorter warm-down" and last["metric"] is not None
    assert last["input_tokens"] > 0 and last["cost_usd"] > 0


def test_3_openai_agent(ws):
    def model(request):
        old, new = set_constant(ws, "SCALAR_LR", "0.4")
        text = "DESCRIPTION: lower the scalar lr\n\n" + edit("train.py", old + "\n", new + "\n")
        return completion(text)(request)

    with OpenAIServer(fallback=model) as server:
        result = invoke(
            "run", "--agent", "openai", "--base-url", server.base_url, "--max-experiments", "1", *RUN
        )
    assert result.exit_code == 0, result.output
    last = rows(ws)[-1]
    assert last["description"] == "lower the scalar lr" and last["metric"] is not None


def test_4_command_agent(ws, tmp_path):
    experiments_before = [r for r in rows(ws) if r["status"] != "baseline"]
    script = tmp_path / "agent.py"
    old, new = set_constant(ws, "FINAL_LR_FRAC", "0.05")
    script.write_text(
        "from pathlib import Path\n"
        f"p = Path('train.py'); p.write_text(p.read_text().replace({old!r}, {new!r}))\n"
        "print('end the warm-down at 5% of the lr')\n"
    )
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    result = invoke("run", "--agent", "command", "--agent-command", command, "--max-experiments", "1", *RUN)
    assert result.exit_code == 0, result.output
    last = rows(ws)[-1]
    assert last["description"] == "end the warm-down at 5% of the lr" and last["metric"] is not None
    assert [r for r in rows(ws) if r["status"] != "baseline"][:-1] == experiments_before  # one more
