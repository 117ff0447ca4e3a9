"""The example plugins in docs/plugins/examples, installed as a user installs them (pip install -e)."""

import json
import re
import shlex
from importlib import resources
from pathlib import Path

from click.testing import CliRunner

from autoresearch.cli import cli
from autoresearch.history import History

from conftest import git, invoke
from servers.messages_server import MessagesServer, message, text, tool_use

INSTALL_HINT = "install the examples: pip install -e docs/plugins/examples/<name> (as the README says)"


def ledger_rows(root, tag="t"):
    return History(root / ".autoresearch" / "history.db").experiments(tag)


def test_both_examples_are_listed_as_targets_and_plugins():
    targets = {t["name"]: t["description"] for t in json.loads(invoke("targets", "--json").output)}
    assert {"perf_example", "prompt_example"} <= set(targets), INSTALL_HINT
    assert targets["perf_example"] and targets["prompt_example"]
    plugins = json.loads(invoke("plugins").output)
    assert {"name": "perf_example", "hooks": ["register_targets"], "version": "0.1.0"} in plugins
    hooks = ["register_commands", "register_targets"]
    assert {"name": "prompt_example", "hooks": hooks, "version": "0.1.0"} in plugins


# ---- perf_example


def test_mutate_makes_perf_example_faster(tmp_path):
    workspace = tmp_path / "perf"
    run = ("run", "perf_example", "--workspace", str(workspace), "--tag", "t")
    # the default noise-aware policy, judging the runtime's noise on a log scale (noise="relative")
    args = [*run, "--agent", "mutate", "--max-experiments", "5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert {"multiply.py", "test_multiply.py", "benchmark.py"} <= set(git(workspace, "ls-files").split())
    rows = ledger_rows(workspace)
    baseline, kept = rows[0], [r for r in rows if r["status"] == "keep"]
    assert baseline["status"] == "baseline" and len(rows) == 6
    # the first step is always KARATSUBA_CUTOFF 1 -> 2 (its only neighbour): about twice as fast
    assert kept and kept[-1]["metric"] < 0.8 * baseline["metric"], result.output
    assert git(workspace, "rev-parse", "autoresearch/t") == kept[-1]["commit"]
    assert "KARATSUBA_CUTOFF = 1 " not in git(workspace, "show", "autoresearch/t:multiply.py")


FAST_BUT_WRONG = """\
def multiply(p, q):
    return [0] * (len(p) + len(q) - 1)
"""


def test_a_wrong_answer_is_invalid_and_never_kept(tmp_path, monkeypatch, scripted):
    workspace = tmp_path / "perf"
    assert invoke("init", "perf_example", str(workspace)).exit_code == 0
    monkeypatch.chdir(workspace)
    scripted.append({"multiply.py": FAST_BUT_WRONG, "_description": "skip the arithmetic"})
    result = invoke("run", "--agent", "scripted", "--tag", "t", "--max-experiments", "1", "--baseline-runs=2")
    assert result.exit_code == 0, result.output
    baseline, wrong = ledger_rows(workspace)
    assert wrong["status"] == "invalid" and wrong["metric"] is None
    assert wrong["reason"].startswith("correctness tests failed: FAIL: test_"), wrong["reason"]
    assert git(workspace, "rev-parse", "autoresearch/t") == baseline["commit"]
    assert "def karatsuba" in git(workspace, "show", "autoresearch/t:multiply.py")


# ---- prompt_example

LABELLING_PROMPT = (
    "Label this customer message as billing, shipping, technical or account. "
    "Answer with the label only.\n\n{text}\n"
)


def split(name):
    data = resources.files("autoresearch_prompt_example") / "data" / name
    return [json.loads(line) for line in data.read_text().splitlines()]


class FakeClaude:
    """One local Messages API for both callers: the agent (its requests carry tools) and the evaluator.

    As a classifier it knows every message's label, but answers with the bare label only when the
    prompt lists the labels; otherwise it answers in a sentence, whose first word is no label.
    """

    def __init__(self, agent_turns):
        self.agent_turns = list(agent_turns)
        self.labels = {item["text"]: item["label"] for item in split("train.jsonl") + split("heldout.jsonl")}

    def __call__(self, request):
        if "tools" in request.body:
            return self.agent_turns.pop(0)(request)
        prompt = request.body["messages"][0]["content"]
        label = next(label for item_text, label in self.labels.items() if item_text in prompt)
        listed = "billing, shipping, technical or account" in prompt
        return message(text(label.capitalize() if listed else f"This message is about {label}."))(request)


def test_prompt_example_end_to_end_with_heldout_score(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    workspace = tmp_path / "prompt"
    agent_turns = [
        message(tool_use("write_file", {"path": "prompt.txt", "content": LABELLING_PROMPT})),
        message(tool_use("submit", {"description": "list the four labels, ask for the label only"})),
    ]
    with MessagesServer(fallback=FakeClaude(agent_turns)) as server:
        scaffold = ("run", "prompt_example", "--workspace", str(workspace), "-o", f"base_url={server.url}")
        agent = ("--agent", "anthropic", "--base-url", server.url)
        result = invoke(*scaffold, *agent, "--max-experiments", "1", "--baseline-runs", "2", "--tag", "t")
        assert result.exit_code == 0, result.output
        baseline, labelled = ledger_rows(workspace)
        assert (baseline["metric"], baseline["samples"]) == (0.0, [0.0, 0.0])
        assert (labelled["status"], labelled["metric"]) == ("keep", 1.0)
        assert labelled["extras"] == {"items": 40}

        evaluator_calls = [r for r in server.requests if "tools" not in r.body]
        assert len(evaluator_calls) == 3 * 40  # two baseline runs and the candidate, 40 messages each
        assert {r.headers["authorization"] for r in evaluator_calls} == {"Bearer test-key"}  # passed through
        assert {r.body["model"] for r in evaluator_calls} == {"claude-haiku-4-5"}

        heldout_texts = [item["text"] for item in split("heldout.jsonl")]
        seen_before = json.dumps([r.body for r in server.requests])
        assert not any(t in seen_before for t in heldout_texts)
        workspace_text = "".join(p.read_text() for p in workspace.iterdir() if p.is_file())
        assert not any(t in workspace_text for t in heldout_texts)

        monkeypatch.chdir(workspace)
        cli.plugins_loaded = False  # another test may have listed the commands without this plugin
        report = invoke("prompt-example", "heldout").output
    lines = dict(line.split(": ") for line in report.split("---\n")[1].splitlines())
    assert {key: float(value) for key, value in lines.items()} == {
        "baseline_accuracy": 0.0,
        "baseline_heldout_accuracy": 0.0,
        "best_accuracy": 1.0,
        "best_heldout_accuracy": 1.0,
    }
    assert f"on {len(heldout_texts)} held-out messages" in report
    sent = json.dumps([r.body for r in server.requests[len(agent_turns) + 3 * 40 :]])
    assert all(t in sent for t in heldout_texts)


def test_prompt_example_needs_the_api_key(tmp_path):
    result = invoke("run", "prompt_example", "--workspace", str(tmp_path / "p"), "--max-experiments", "1")
    assert result.exit_code == 1 and "ANTHROPIC_API_KEY is not set" in result.output


def test_the_guides_ledger_queries_read_its_first_run(tmp_path, monkeypatch):
    guide = (Path(__file__).parent.parent / "docs" / "guide.md").read_text()
    first_run = shlex.split(re.search(r"^autoresearch run perf_example .*$", guide, re.M).group(0))
    query = shlex.split(re.search(r'^autoresearch sql ".*?"$', guide, re.M | re.S).group(0))
    first_run[first_run.index("--max-experiments") + 1] = "1"  # the guide's 10, shortened
    monkeypatch.chdir(tmp_path)
    assert invoke(*first_run[1:]).exit_code == 0, INSTALL_HINT
    monkeypatch.chdir(tmp_path / "perf_example")
    table = invoke(*query[1:]).output.splitlines()
    assert table[0].split() == ["number", "status", "runtime_ms", "description"]
    assert table[1].split()[:2] == ["0", "baseline"]
