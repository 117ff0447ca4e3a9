"""Where a proposal starts from: the one place that picks a new experiment's parent commit.

Today every proposal starts from the incumbent. A later search strategy (best-of-N rounds, a tree
of kept commits) is another ``Strategy`` here, not a change to the loop.
"""

from __future__ import annotations


class Strategy:
    """Picks the commit the next proposal is drafted against."""

    name = "incumbent"

    def parent(self, incumbent: str) -> str:
        """The parent of the next proposal, given the run's incumbent commit."""
        return incumbent


STRATEGIES = {Strategy.name: Strategy}
