"""`autoresearch run` with each LLM agent on a toy target, against local servers: the whole loop."""

import json
import shlex
import sys

import pytest

from autoresearch import pricing
from autoresearch.agents.anthropic import DEFAULT_MODEL
from autoresearch.history import History

from conftest import MODEL, invoke
from servers.messages_server import MessagesServer, error, message, tool_use
from servers.openai_server import OpenAIServer, completion, edit

FAST = ["--api-retry-seconds", "5"]


def rows(root):
    return History(root / ".autoresearch" / "history.db").experiments("t")


def model_with(x: float) -> str:
    return MODEL.replace("X = 3.0", f"X = {x}")


class Claude:
    """Each proposal: write model.py with X one step closer to the optimum, then submit."""

    def __init__(self):
        self.proposals = 0

    def __call__(self, request):
        last = request.body["messages"][-1]["content"]
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        if answered:
            return message(tool_use("submit", {"description": f"X step {self.proposals}"}))(request)
        self.proposals += 1
        x = round(3.0 - 0.2 * self.proposals, 2)
        return message(tool_use("write_file", {"path": "model.py", "content": model_with(x)}))(request)


def per_proposal_cost():
    return pricing.cost_usd(DEFAULT_MODEL, 200, 40, 0, 0)


def test_anthropic_agent_runs_the_loop(toy, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with MessagesServer(fallback=Claude()) as server:
        result = invoke("run", "--max-experiments", "5", "--tag", "t", "--base-url", server.url, *FAST)
    assert result.exit_code == 0, result.output
    assert f"agent: anthropic, model {DEFAULT_MODEL}" in result.output  # the default with a key
    got = rows(toy)
    assert [r["status"] for r in got] == ["baseline"] + ["keep"] * 5
    for row in got[1:]:
        assert (row["input_tokens"], row["output_tokens"]) == (200, 40)
        assert row["cost_usd"] == pytest.approx(per_proposal_cost())
    log = invoke("log").output
    assert f"total cost: ${5 * per_proposal_cost():.4f}" in log


def test_max_cost_stops_before_the_budget_is_exceeded(toy, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    cap = 2.5 * per_proposal_cost()
    with MessagesServer(fallback=Claude()) as server:
        result = invoke("run", "--tag", "t", "--base-url", server.url, "--max-cost", str(cap), *FAST)
    assert result.exit_code == 0, result.output
    assert "--max-cost" in result.output
    spent = sum(r["cost_usd"] or 0 for r in rows(toy))
    assert len(rows(toy)) == 3 and spent <= cap


def test_api_blips_are_retried_and_a_bad_key_stops_the_run(toy, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with MessagesServer(fallback=Claude()) as server:
        server.play(error(429, "rate_limit_error", retry_after="0"), error(529, "overloaded_error"))
        result = invoke(
            "run",
            "--agent",
            "anthropic",
            "--max-experiments",
            "1",
            "--tag",
            "t",
            "--base-url",
            server.url,
            *FAST,
        )
        assert result.exit_code == 0 and rows(toy)[1]["status"] == "keep"
        server.play(error(401, "authentication_error"))
        result = invoke("run", "--agent", "anthropic", "--tag", "t", "--base-url", server.url, *FAST)
    assert result.exit_code == 1
    assert "ANTHROPIC_API_KEY" in result.output
    assert rows(toy)[-1]["status"] == "agent_error"


def test_repeated_server_errors_are_agent_errors_and_the_loop_goes_on(toy, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with MessagesServer(fallback=Claude()) as server:
        server.play(*[error(500, "api_error")] * 50)
        result = invoke(
            "run",
            "--agent",
            "anthropic",
            "--max-experiments",
            "2",
            "--tag",
            "t",
            "--base-url",
            server.url,
            "--api-retry-seconds",
            "0.5",
        )
    assert result.exit_code == 0, result.output
    statuses = [r["status"] for r in rows(toy)]
    assert statuses[1] == "agent_error" and len(statuses) == 3


def test_openai_agent_runs_the_loop(toy):
    steps = iter(range(1, 100))

    def reply(request):
        x = round(3.0 - 0.2 * next(steps), 2)
        current = (toy / ".autoresearch/checkouts/draft/model.py").read_text().splitlines()[0]
        text = f"DESCRIPTION: move X to {x}\n\n" + edit("model.py", current + "\n", f"X = {x}\n")
        return completion(text, prompt_tokens=300, completion_tokens=60)(request)

    with OpenAIServer(fallback=reply) as server:
        result = invoke(
            "run",
            "--agent",
            "openai",
            "--model",
            "qwen3",
            "--base-url",
            server.base_url,
            "--max-experiments",
            "5",
            "--tag",
            "t",
            *FAST,
        )
    assert result.exit_code == 0, result.output
    got = rows(toy)
    assert [r["status"] for r in got] == ["baseline"] + ["keep"] * 5
    assert all((r["input_tokens"], r["output_tokens"]) == (300, 60) for r in got[1:])
    assert all(r["cost_usd"] is None for r in got[1:])  # a local model has no price
    assert json.loads(invoke("log", "--json").output)[1]["input_tokens"] == 300


def test_command_agent_runs_the_loop(toy, tmp_path):
    cli = tmp_path / "fake-agent.py"
    cli.write_text(
        "import json, re, sys\n"
        "from pathlib import Path\n"
        "brief = Path(sys.argv[1]).read_text()\n"
        "model = Path('model.py')\n"
        "x = float(re.search(r'^X = (.*)$', model.read_text(), re.M).group(1))\n"
        "model.write_text(model.read_text().replace(f'X = {x}', f'X = {round(x - 0.2, 2)}'))\n"
        "Path('evaluate.py').write_text('print(\"---\"); print(\"loss: 0\")')  # cheating: reverted\n"
        "print(json.dumps({'type': 'result', 'result': f'lower X to {round(x - 0.2, 2)}',\n"
        "                  'usage': {'input_tokens': 1000, 'output_tokens': 100}, 'total_cost_usd': 0.02}))\n"
    )
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(cli))} {{brief_file}}"
    result = invoke(
        "run", "--agent", "command", "--agent-command", command, "--max-experiments", "5", "--tag", "t"
    )
    assert result.exit_code == 0, result.output
    got = rows(toy)
    assert [r["status"] for r in got] == ["baseline"] + ["keep"] * 5
    assert got[1]["description"] == "lower X to 2.8"
    assert "evaluate.py" in got[1]["reason"]  # the reverted cheat is noted
    assert all(r["cost_usd"] == 0.02 and r["input_tokens"] == 1000 for r in got[1:])
    assert (toy / "evaluate.py").read_text().startswith("import os")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--agent", "anthropic"], "ANTHROPIC_API_KEY is not set"),
        (["--agent", "command"], "the command agent needs --agent-command"),
        (["--agent", "command", "--agent-command", "codex"], "codex is not on PATH"),
    ],
)
def test_a_misconfigured_agent_stops_before_the_baseline(toy, args, message, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = invoke("run", "--tag", "t", *args)
    assert result.exit_code == 1 and message in result.output
    assert rows(toy) == []
