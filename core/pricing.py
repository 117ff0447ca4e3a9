"""What LLM tokens cost: the one price table, and the cost of a proposal's usage."""

from __future__ import annotations

import logging
import re
from typing import NamedTuple

log = logging.getLogger(__name__)

DEFAULT_MAX_COST_USD = 10.0  # the spending cap a run gets when the API agent is the default


class Price(NamedTuple):
    """USD per million tokens. ``cache_write`` is the 5-minute ephemeral cache write."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# Anthropic list prices (platform.claude.com/docs/en/about-claude/pricing), checked 2026-11-30.
# Models priced by prompt length (Haiku 5.5) are left out: their cost is recorded as unknown.
PRICES: dict[str, Price] = {
    "claude-fable-5-1": Price(10.00, 50.00, 12.50, 0.25),
    "claude-opus-5": Price(5.00, 25.00, 6.25, 0.50),
    "claude-opus-4-8": Price(5.00, 25.00, 6.25, 0.50),
    "claude-opus-4-7": Price(5.00, 25.00, 6.25, 0.50),
    "claude-opus-4-6": Price(5.00, 25.00, 6.25, 0.50),
    "claude-opus-4-5": Price(5.00, 25.00, 6.25, 0.50),
    "claude-sonnet-5-5": Price(2.00, 10.00, 2.50, 0.10),
    "claude-sonnet-5": Price(2.00, 10.00, 2.50, 0.20),
    "claude-sonnet-4-6": Price(3.00, 15.00, 3.75, 0.30),
    "claude-sonnet-4-5": Price(3.00, 15.00, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.00, 5.00, 1.25, 0.10),
}

DATED_SUFFIX = re.compile(r"-\d{8}$")  # claude-haiku-4-5-20251001 is priced as claude-haiku-4-5
_warned: set[str] = set()


def price_for(model: str | None) -> Price | None:
    """The model's price, also for a dated snapshot id; None where the table has none."""
    if not model:
        return None
    return PRICES.get(model) or PRICES.get(DATED_SUFFIX.sub("", model))


def cost_usd(
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    cache_write_tokens: int = 0,
    cache_read_tokens: int = 0,
) -> float | None:
    """The USD cost of the tokens, or None (with one warning per model and process) if unpriced."""
    price = price_for(model)
    if price is None:
        name = model or "(the CLI's default model)"
        if name not in _warned:
            _warned.add(name)
            log.warning("no price known for model %s: tokens are recorded, cost is not", name)
        return None
    return (
        input_tokens * price.input
        + output_tokens * price.output
        + cache_write_tokens * price.cache_write
        + cache_read_tokens * price.cache_read
    ) / 1e6
