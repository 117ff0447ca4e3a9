"""The anthropic agent, through the real SDK, against a local Messages API server."""

from __future__ import annotations

import logging

import pytest

from autoresearch import pricing
from autoresearch.agent import AgentError, AgentOptions, FatalAgentError
from autoresearch.agents.anthropic import DEFAULT_MODEL, AnthropicAgent

from servers.messages_server import (
    MessagesServer,
    cut_stream,
    error,
    message,
    stream_error,
    text,
    tool_use,
)
from servers.scripted import Reply
from servers.toy import PREPARE, TRAIN, make_brief, make_repo

FAST = {"retry_base_seconds": 0.001, "retry_max_delay": 0.01, "retry_seconds": 5}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    return make_repo(tmp_path / "ws")


@pytest.fixture
def server():
    with MessagesServer() as running:
        yield running


def make_agent(server, **options) -> AnthropicAgent:
    extra = {**FAST, **options.pop("extra", {})}
    return AnthropicAgent(AgentOptions(base_url=server.url, extra=extra, **options))


def replace(old: str, new: str, path: str = "train.py") -> dict:
    return tool_use("replace_in_file", {"path": path, "old_text": old, "new_text": new})


def submit(description: str = "halve the learning rate") -> dict:
    return tool_use("submit", {"description": description})


def tool_results(request) -> list[dict]:
    return [b for b in request.body["messages"][-1]["content"] if b["type"] == "tool_result"]


def test_tool_calls_improve_train_py(repo, server):
    server.play(
        message(text("Let me read it."), tool_use("view_file", {"path": "train.py"})),
        message(replace("LEARNING_RATE = 0.1", "LEARNING_RATE = 0.05"), cache_write=900),
        message(submit(), cache_read=900, input_tokens=50, output_tokens=10),
    )
    proposal = make_agent(server).propose(make_brief(repo))

    assert "LEARNING_RATE = 0.05" in (repo / "train.py").read_text()
    assert proposal.description == "halve the learning rate"
    assert proposal.note is None
    assert (proposal.input_tokens, proposal.output_tokens) == (250, 50)
    assert (proposal.cache_write_tokens, proposal.cache_read_tokens) == (900, 900)
    assert proposal.cost_usd == pytest.approx(pricing.cost_usd(DEFAULT_MODEL, 250, 50, 900, 900))
    first, second, _ = server.requests
    assert first.path == "/v1/messages"
    assert first.headers["authorization"] == "Bearer test-key"
    assert first.body["model"] == DEFAULT_MODEL and first.body["stream"] is True
    assert {t["name"] for t in first.body["tools"]} == {
        "view_file",
        "replace_in_file",
        "write_file",
        "read_log",
        "submit",
    }
    assert "LEARNING_RATE = 0.1" in tool_results(second)[0]["content"]


def test_stable_prefix_is_cached_and_volatile_part_follows(repo, server):
    server.play(
        message(tool_use("view_file", {"path": "prepare.py"})),
        message(submit()),
    )
    make_agent(server).propose(make_brief(repo, volatile="Last failure: NaN loss."))

    first, second = server.requests
    instructions, stable = first.body["system"]
    assert "cache_control" not in instructions
    assert stable["cache_control"] == {"type": "ephemeral"}
    assert "Lower the loss" in stable["text"] and PREPARE.strip() in stable["text"]
    assert "NaN loss" not in stable["text"]
    assert "NaN loss" in first.body["messages"][0]["content"][0]["text"]
    # The newest block carries the moving breakpoint; earlier turns are read from the cache.
    marked = [
        (i, j)
        for i, m in enumerate(second.body["messages"])
        for j, block in enumerate(m["content"])
        if "cache_control" in block
    ]
    assert marked == [(2, 0)]
    assert tool_results(second)[0]["content"].count("DATA = 'fixed'") == 1


def test_brief_without_marker_is_all_stable(repo, server):
    server.play(message(submit()))
    brief = make_brief(repo)
    brief.text = "Lower the loss. History: nothing yet."
    make_agent(server).propose(brief)

    request = server.requests[0]
    assert "History: nothing yet." in request.body["system"][1]["text"]
    assert "History" not in request.body["messages"][0]["content"][0]["text"]


def test_protected_and_outside_paths_are_refused(repo, server):
    (repo / "link.py").symlink_to(repo / "prepare.py")
    server.play(
        message(
            replace("DATA = 'fixed'", "DATA = 'easy'", path="prepare.py"),
            tool_use("write_file", {"path": "../escape.py", "content": "x = 1\n"}),
            tool_use("write_file", {"path": "link.py", "content": "DATA = 'easy'\n"}),
            tool_use("write_file", {"path": ".git/config", "content": ""}),
            tool_use("write_file", {"path": str(repo.parent / "abs.py"), "content": ""}),
        ),
        message(submit("nothing")),
    )
    brief = make_brief(repo)
    brief.editable.append("link.py")
    proposal = make_agent(server).propose(brief)

    results = tool_results(server.requests[1])
    assert len(results) == 5
    assert all(r["is_error"] and "refused" in r["content"] for r in results)
    assert (repo / "prepare.py").read_text() == PREPARE
    assert not (repo.parent / "escape.py").exists() and not (repo.parent / "abs.py").exists()
    assert proposal.note == "no editable file was changed"


def test_malformed_tool_input_is_answered_not_fatal(repo, server):
    server.play(
        message(
            tool_use("replace_in_file", {"path": "train.py", "old_text": "STEPS = 100"}),
            tool_use("view_file", {"path": "train.py", "start_line": "3"}),
            tool_use("run_shell", {"command": "rm -rf /"}),
            tool_use("view_file", ["train.py"]),
            replace("no such text", "x"),
            tool_use("submit", {}),
        ),
        message(replace("STEPS = 100", "STEPS = 200"), submit("more steps")),
    )
    proposal = make_agent(server).propose(make_brief(repo))

    results = tool_results(server.requests[1])
    assert [r["is_error"] for r in results] == [True] * 6
    assert "'new_text' must be a string" in results[0]["content"]
    assert "'start_line' must be a positive integer" in results[1]["content"]
    assert "unknown tool 'run_shell'" in results[2]["content"]
    assert "must be a JSON object" in results[3]["content"]
    assert "does not occur" in results[4]["content"]
    assert "description" in results[5]["content"]
    assert proposal.description == "more steps"
    assert "STEPS = 200" in (repo / "train.py").read_text()


def test_unparseable_tool_json_in_the_stream_is_retried(repo, server):
    server.play(
        message(tool_use("view_file", None, raw='{"path": train.py}')),
        message(submit()),
    )
    proposal = make_agent(server).propose(make_brief(repo))
    assert proposal.description == "halve the learning rate"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [
        error(429, "rate_limit_error", retry_after="0"),
        error(500, "api_error"),
        error(529, "overloaded_error"),
        stream_error("overloaded_error"),
        Reply(drop=True),
        cut_stream(replace("STEPS = 100", "STEPS = 1")),
    ],
    ids=["429", "500", "529-overloaded", "stream-error", "dropped", "cut-stream"],
)
def test_transient_failures_are_retried(repo, server, failure):
    server.play(failure, message(replace("STEPS = 100", "STEPS = 150")), message(submit()))
    proposal = make_agent(server).propose(make_brief(repo))

    assert len(server.requests) == 3
    assert proposal.description == "halve the learning rate"
    assert "STEPS = 150" in (repo / "train.py").read_text()
    assert proposal.input_tokens == 200  # the failed attempt costs nothing


def test_repeated_500s_become_an_agent_error(repo):
    with MessagesServer(fallback=error(500, "api_error")) as server:
        agent = make_agent(server, extra={"retry_seconds": 0.3})
        with pytest.raises(AgentError, match="gave up after"):
            agent.propose(make_brief(repo))
    assert len(server.requests) > 2


def test_a_stalled_server_times_out_and_is_retried(repo):
    with MessagesServer(fallback=Reply(delay=2.0)) as server:
        agent = make_agent(server, timeout=0.2, extra={"retry_seconds": 0.5})
        with pytest.raises(AgentError, match="timed out"):
            agent.propose(make_brief(repo))
    assert len(server.requests) >= 2


@pytest.mark.parametrize("status,kind", [(401, "authentication_error"), (403, "permission_error")])
def test_a_rejected_key_stops_the_run(repo, server, status, kind):
    server.play(error(status, kind, "invalid x-api-key"))
    with pytest.raises(FatalAgentError) as raised:
        make_agent(server).propose(make_brief(repo))
    assert "ANTHROPIC_API_KEY" in str(raised.value) and "\n" not in str(raised.value)
    assert len(server.requests) == 1


def test_an_unknown_model_stops_the_run(repo, server):
    server.play(error(404, "not_found_error", "model: claude-nope"))
    with pytest.raises(FatalAgentError, match="--model"):
        make_agent(server, model="claude-nope").propose(make_brief(repo))


def test_a_missing_key_stops_the_run(repo, server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(FatalAgentError, match="ANTHROPIC_API_KEY is not set"):
        make_agent(server).propose(make_brief(repo))
    assert server.requests == []


def test_the_turn_limit_ends_the_proposal(repo, server):
    server.play(*[message(tool_use("view_file", {"path": "train.py"}))] * 3)
    proposal = make_agent(server, max_turns=2).propose(make_brief(repo))
    assert len(server.requests) == 2
    assert proposal.note == "stopped after 2 turns without submit; no editable file was changed"
    assert (repo / "train.py").read_text() == TRAIN


def test_ending_the_turn_without_submit_keeps_the_change(repo, server):
    server.play(
        message(replace("STEPS = 100", "STEPS = 300")),
        message(text("Tripled the number of steps.\nIt should converge further.")),
    )
    proposal = make_agent(server).propose(make_brief(repo))
    assert proposal.description == "Tripled the number of steps."
    assert proposal.note == "ended its turn without submit"
    assert "STEPS = 300" in (repo / "train.py").read_text()


def test_a_tool_call_cut_off_by_max_tokens_is_not_run(repo, server):
    server.play(
        message(
            tool_use("write_file", {"path": "train.py", "content": "LEARNING_RATE ="}),
            stop_reason="max_tokens",
        ),
        message(submit()),
    )
    make_agent(server).propose(make_brief(repo))
    assert (repo / "train.py").read_text() == TRAIN
    assert "cut off" in tool_results(server.requests[1])[0]["content"]


def test_read_log_shows_the_tail_of_the_last_log(repo, server, tmp_path):
    log = tmp_path / "exp1.log"
    log.write_text("step 1\nstep 2\nTraceback: boom\n")
    server.play(message(tool_use("read_log", {"lines": 2})), message(submit()))
    make_agent(server).propose(make_brief(repo, last_log=log))
    assert tool_results(server.requests[1])[0]["content"] == "step 2\nTraceback: boom"


def test_an_unpriced_model_records_tokens_and_warns_once(repo, server, monkeypatch, caplog):
    monkeypatch.setattr(pricing, "_warned", set())
    server.play(message(submit()), message(submit()))
    agent = make_agent(server, model="claude-future-9")
    with caplog.at_level(logging.WARNING, logger="autoresearch.pricing"):
        proposals = [agent.propose(make_brief(repo)) for _ in range(2)]
    assert [p.cost_usd for p in proposals] == [None, None]
    assert [p.input_tokens for p in proposals] == [100, 100]
    assert [r.message for r in caplog.records].count(
        "no price known for model claude-future-9: tokens are recorded, cost is not"
    ) == 1


def test_announce_names_the_model_and_endpoint(server):
    line = make_agent(server, model="claude-opus-5").announce()
    assert "claude-opus-5" in line and server.url in line and "\n" not in line
