"""What the agents share: back-off, prices, the brief's split, CLI reports, registration."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from autoresearch import pricing, registry
from autoresearch.agent import AgentError, AgentOptions, FatalAgentError
from autoresearch.agents import default_agent_name
from autoresearch.agents.prompt import VOLATILE_MARKER, one_line, split_brief
from autoresearch.agents.reports import parse_report
from autoresearch.agents.retry import Backoff, TransientError, call_with_retries, http_failure


def test_backoff_grows_with_jitter_up_to_the_cap():
    backoff = Backoff(seconds=60, base=1.0, cap=8.0)
    for attempt, step in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0)]:
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(step / 2 <= d <= step for d in delays) and len(delays) > 1
    assert backoff.delay(0, retry_after=30.0) == 30.0


def test_backoff_reads_the_agent_options():
    options = AgentOptions(extra={"retry_seconds": "5", "retry_base_seconds": 0.5})
    assert Backoff.from_options(options) == Backoff(seconds=5.0, base=0.5, cap=60.0)


def test_retries_until_success_then_until_the_time_is_spent():
    outcomes = iter([TransientError("429"), TransientError("529"), "done"])

    def flaky():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    fast = Backoff(seconds=1.0, base=0.001, cap=0.001)
    assert call_with_retries(flaky, fast, "API") == "done"

    def down():
        raise TransientError("HTTP 503: unavailable")

    with pytest.raises(AgentError, match=r"API: HTTP 503: unavailable \(gave up after \d+ attempts"):
        call_with_retries(down, Backoff(seconds=0.05, base=0.001, cap=0.01), "API")


@pytest.mark.parametrize(
    "status,kind",
    [
        (401, FatalAgentError),
        (403, FatalAgentError),
        (404, FatalAgentError),
        (408, TransientError),
        (429, TransientError),
        (500, TransientError),
        (529, TransientError),
        (400, AgentError),
        (413, AgentError),
    ],
)
def test_http_failures_are_classified(status, kind):
    failure = http_failure(status, "why\nexactly", {"retry-after": "7"}, "Some API", "SOME_KEY")
    assert type(failure) is kind and "\n" not in str(failure)
    if status == 429:
        assert failure.retry_after == 7.0


def test_costs_come_from_the_price_table():
    price = pricing.PRICES["claude-sonnet-5-5"]
    expected = (1e6 * price.input + 2e6 * price.output + 3e6 * price.cache_write) / 1e6
    assert pricing.cost_usd("claude-sonnet-5-5", 1_000_000, 2_000_000, 3_000_000) == expected
    dated = pricing.cost_usd("claude-haiku-4-5-20251001", 1_000_000, 0, 0, 1_000_000)
    assert dated == pricing.PRICES["claude-haiku-4-5"].input + pricing.PRICES["claude-haiku-4-5"].cache_read


def test_an_unpriced_model_warns_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(pricing, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="autoresearch.pricing"):
        assert pricing.cost_usd("llama3", 10, 10) is None
        assert pricing.cost_usd("llama3", 10, 10) is None
        assert pricing.cost_usd(None, 10, 10) is None
    assert len(caplog.records) == 2


def test_the_brief_splits_at_the_volatile_marker():
    text = f"rules\nprogram\n{VOLATILE_MARKER}\nhistory\nlast failure\n"
    assert split_brief(text) == ("rules\nprogram", "history\nlast failure")
    assert split_brief("all stable\n") == ("all stable", "")


def test_one_line_descriptions():
    assert one_line("\n  Halve   the rate.\nMore detail.") == "Halve the rate."
    assert one_line("x" * 400) == "x" * 299 + "…"
    assert one_line("") == ""


def test_plain_text_output_ends_with_the_final_message():
    report = parse_report("working...\nApplied the change.\n\n")
    assert report.message == "Applied the change." and not report.has_usage


def test_a_failed_claude_result_is_an_error():
    report = parse_report('{"type": "result", "subtype": "error_max_turns", "is_error": true}')
    assert report.error == "error_max_turns"


def test_codex_failures_are_errors():
    report = parse_report('{"type": "turn.failed", "error": {"message": "stream disconnected"}}')
    assert report.error == "stream disconnected"


def test_the_bundled_agents_register(monkeypatch):
    monkeypatch.setenv(
        registry.LOAD_ENV, ",".join(f"autoresearch.agents.{n}" for n in ("anthropic", "command", "openai"))
    )
    found = {}
    registry.build_manager().hook.register_agents(register=lambda cls: found.update({cls.name: cls}))
    assert set(found) == {"anthropic", "command", "openai"}
    for cls in found.values():
        assert cls.description and "\n" not in cls().announce()


def test_loading_the_agents_does_not_import_their_sdks():
    code = (
        "import sys, autoresearch.agents.anthropic, autoresearch.agents.openai, "
        "autoresearch.agents.command; "
        "print(sorted(m for m in ('anthropic', 'httpx', 'httpx2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_default_agent_follows_the_key():
    name, line = default_agent_name({"ANTHROPIC_API_KEY": "sk-ant"})
    assert name == "anthropic"
    assert "claude-sonnet-5-5" in line and "$10.00" in line and "--max-cost" in line
    name, line = default_agent_name({})
    assert name == "mutate" and "ANTHROPIC_API_KEY" in line and "--agent" in line
    assert "\n" not in line
