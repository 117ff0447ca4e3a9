"""Bundled agents, and the choice of one when ``--agent`` is not given."""

from __future__ import annotations

from collections.abc import Mapping

from ..pricing import DEFAULT_MAX_COST_USD
from .anthropic import DEFAULT_MODEL, KEY_ENV


def default_agent_name(env: Mapping[str, str]) -> tuple[str, str]:
    """The default agent's name and the one line that announces it when a run starts."""
    if env.get(KEY_ENV):
        return "anthropic", (
            f"agent: anthropic, model {DEFAULT_MODEL} ({KEY_ENV} is set); "
            f"spending capped at ${DEFAULT_MAX_COST_USD:.2f} unless --max-cost says otherwise"
        )
    return "mutate", (
        f"agent: mutate (offline numeric perturbations, no LLM); for Claude set {KEY_ENV}, "
        "or choose --agent openai (local models) or --agent command (a coding-agent CLI)"
    )
