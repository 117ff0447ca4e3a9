"""Token usage summed over one proposal's API calls, and the Proposal that reports it."""

from __future__ import annotations

from dataclasses import dataclass

from ..agent import Proposal
from ..pricing import cost_usd


@dataclass
class Usage:
    input_tokens: int = 0  # uncached input
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    def add(
        self,
        input_tokens: int | None = 0,
        output_tokens: int | None = 0,
        cache_write_tokens: int | None = 0,
        cache_read_tokens: int | None = 0,
    ) -> None:
        """Add one call's counts; APIs report absent counts as None."""
        self.input_tokens += input_tokens or 0
        self.output_tokens += output_tokens or 0
        self.cache_write_tokens += cache_write_tokens or 0
        self.cache_read_tokens += cache_read_tokens or 0

    def cost(self, model: str | None) -> float | None:
        return cost_usd(
            model,
            self.input_tokens,
            self.output_tokens,
            self.cache_write_tokens,
            self.cache_read_tokens,
        )

    def proposal(
        self,
        description: str,
        cost: float | None,
        note: str | None = None,
    ) -> Proposal:
        return Proposal(
            description=description,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cost_usd=cost,
            note=note,
        )
