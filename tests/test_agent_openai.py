"""The openai agent, through httpx, against a local OpenAI-compatible server."""

from __future__ import annotations

import socket

import pytest

from autoresearch import pricing
from autoresearch.agent import AgentError, AgentOptions, FatalAgentError
from autoresearch.agents.openai import DEFAULT_BASE_URL, DEFAULT_MODEL, OpenAIAgent

from servers.openai_server import OpenAIServer, completion, edit, error
from servers.scripted import Reply
from servers.toy import PREPARE, TRAIN, make_brief, make_repo

FAST = {"retry_base_seconds": 0.001, "retry_max_delay": 0.01, "retry_seconds": 5}
LOWER_LR = edit("train.py", "LEARNING_RATE = 0.1  # step size\n", "LEARNING_RATE = 0.05  # step\n")
MORE_STEPS = edit("train.py", "STEPS = 100          # optimisation steps\n", "STEPS = 200\n")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    monkeypatch.setattr(pricing, "_warned", set())
    return make_repo(tmp_path / "ws")


@pytest.fixture
def server():
    with OpenAIServer() as running:
        yield running


def make_agent(server, **options) -> OpenAIAgent:
    extra = {**FAST, **options.pop("extra", {})}
    return OpenAIAgent(AgentOptions(base_url=server.base_url, extra=extra, **options))


def test_edit_blocks_improve_train_py(repo, server):
    server.play(
        completion(
            "DESCRIPTION: halve the learning rate\n\n" + LOWER_LR,
            prompt_tokens=1000,
            completion_tokens=120,
            cached_tokens=400,
        )
    )
    proposal = make_agent(server).propose(make_brief(repo, volatile="Last failure: NaN."))

    assert "LEARNING_RATE = 0.05  # step" in (repo / "train.py").read_text()
    assert proposal.description == "halve the learning rate"
    assert proposal.note is None
    assert (proposal.input_tokens, proposal.cache_read_tokens) == (600, 400)
    assert (proposal.output_tokens, proposal.cost_usd) == (120, None)  # a local model: no price
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-local"
    assert request.body["model"] == DEFAULT_MODEL and request.body["stream"] is False
    system, user = request.body["messages"]
    assert system["role"] == "system" and "SEARCH/REPLACE" in system["content"]
    assert PREPARE.strip() in system["content"]  # protected context
    assert system["content"].count("STEPS = 100") == 1  # the brief already shows train.py
    assert "NaN" in user["content"] and "NaN" not in system["content"]


def test_no_key_sends_no_authorization(repo, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.play(completion("DESCRIPTION: more steps\n" + MORE_STEPS))
    make_agent(server, model="llama3").propose(make_brief(repo))
    assert "authorization" not in server.requests[0].headers
    assert server.requests[0].body["model"] == "llama3"


def test_a_failed_block_is_sent_back_with_the_current_file(repo, server):
    wrong = edit("train.py", "LEARNING_RATE = 0.3\n", "LEARNING_RATE = 0.05\n")
    server.play(
        completion("DESCRIPTION: more steps, lower rate\n" + MORE_STEPS + wrong),
        completion(LOWER_LR),
    )
    proposal = make_agent(server).propose(make_brief(repo))

    text = (repo / "train.py").read_text()
    assert "STEPS = 200" in text and "LEARNING_RATE = 0.05" in text
    assert proposal.description == "more steps, lower rate"
    assert proposal.note is None
    feedback = server.requests[1].body["messages"][-1]["content"]
    assert "block 2 (train.py): old text does not occur in train.py" in feedback
    assert "STEPS = 200" in feedback  # the file as it is now, with block 1 applied
    assert proposal.input_tokens == 2000


def test_blocks_for_protected_files_are_refused(repo, server):
    server.play(completion("DESCRIPTION: easier data\n" + edit("prepare.py", "DATA = 'fixed'\n", "")))
    proposal = make_agent(server, max_turns=1).propose(make_brief(repo))
    assert (repo / "prepare.py").read_text() == PREPARE
    assert "refused: prepare.py is not editable" in proposal.note
    assert proposal.note.endswith("no editable file was changed")


def test_replies_without_blocks_end_without_a_change(repo, server):
    server.play(completion("I would lower the learning rate."), completion("Still thinking."))
    proposal = make_agent(server, max_turns=2).propose(make_brief(repo))
    assert len(server.requests) == 2
    assert proposal.description == "I would lower the learning rate."
    assert proposal.note == ("the reply had no complete SEARCH/REPLACE block; no editable file was changed")
    assert (repo / "train.py").read_text() == TRAIN


def test_blocks_inside_thinking_are_ignored(repo, server):
    draft = edit("train.py", "STEPS = 100          # optimisation steps\n", "STEPS = 1\n")
    server.play(completion(f"<think>maybe\n{draft}</think>\nDESCRIPTION: lower lr\n{LOWER_LR}"))
    make_agent(server).propose(make_brief(repo))
    text = (repo / "train.py").read_text()
    assert "STEPS = 100" in text and "LEARNING_RATE = 0.05" in text


@pytest.mark.parametrize(
    "failure",
    [error(429, retry_after="0"), error(500), error(503), Reply(drop=True), Reply(200, {"x": 1})],
    ids=["429", "500", "503", "dropped", "malformed"],
)
def test_transient_failures_are_retried(repo, server, failure):
    server.play(failure, completion("DESCRIPTION: lower lr\n" + LOWER_LR))
    proposal = make_agent(server).propose(make_brief(repo))
    assert len(server.requests) == 2
    assert proposal.description == "lower lr" and proposal.input_tokens == 1000


def test_repeated_500s_become_an_agent_error(repo):
    with OpenAIServer(fallback=error(500)) as server:
        with pytest.raises(AgentError, match="gave up after"):
            make_agent(server, extra={"retry_seconds": 0.3}).propose(make_brief(repo))
    assert len(server.requests) > 2


def test_a_server_that_is_not_running_becomes_an_agent_error(repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = AgentOptions(base_url=f"http://127.0.0.1:{port}/v1", extra={**FAST, "retry_seconds": 0.2})
    with pytest.raises(AgentError, match="connection failed"):
        OpenAIAgent(options).propose(make_brief(repo))


def test_a_rejected_key_stops_the_run(repo, server):
    server.play(error(401, "Incorrect API key provided", "invalid_request_error"))
    with pytest.raises(FatalAgentError, match="OPENAI_API_KEY") as raised:
        make_agent(server).propose(make_brief(repo))
    assert "\n" not in str(raised.value) and len(server.requests) == 1


def test_an_unknown_model_stops_the_run(repo, server):
    server.play(error(404, "model 'nope' not found, try pulling it first"))
    with pytest.raises(FatalAgentError, match="not found, try pulling it first.*--model"):
        make_agent(server, model="nope").propose(make_brief(repo))


def test_defaults_point_at_a_local_ollama():
    agent = OpenAIAgent()
    assert agent.base_url == DEFAULT_BASE_URL == "http://localhost:11434/v1"
    assert agent.announce() == f"agent: openai, model {DEFAULT_MODEL} at {DEFAULT_BASE_URL}"


def test_the_same_failing_block_twice_ends_the_proposal(repo, server):
    wrong = edit("train.py", "LEARNING_RATE = 0.3\n", "LEARNING_RATE = 0.05\n")
    server.play(*[completion("DESCRIPTION: lower rate\n" + wrong) for _ in range(5)])
    proposal = make_agent(server).propose(make_brief(repo))
    assert len(server.requests) == 2  # the first correction, then no more
    assert "the same edit block failed twice; stopped asking for corrections" in proposal.note
    assert (repo / "train.py").read_text() == TRAIN
