"""The agent interface: one proposal per experiment, from a fresh brief."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


class AgentError(Exception):
    """The proposal failed (recorded as ``agent_error``); the loop goes on."""


class AgentExhausted(Exception):
    """The agent has nothing left to propose: the run ends here (a normal stop, no row)."""


class FatalAgentError(Exception):
    """The agent can never succeed as configured (bad key, ...): the run stops."""


@dataclass
class Brief:
    """What an agent gets for one experiment."""

    text: str  # the rendered program: rules, target, incumbent, recent history, last failure
    root: Path  # the workspace; agents edit files here
    editable: list[str]  # paths (relative to root) the agent may change
    protected: list[str]  # paths it may read but never change
    descriptions: list[str] = field(default_factory=list)  # every earlier attempt in this run
    last_log: Path | None = None  # log of the previous experiment
    seed: int = 0  # for agents with randomness: differs per experiment, stable on resume


@dataclass
class Proposal:
    """What the agent did. It has already edited the files under ``brief.root``."""

    description: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float | None = None
    note: str | None = None  # e.g. why nothing changed


@dataclass
class AgentOptions:
    """Command-line options an agent may use; each agent reads what it needs."""

    model: str | None = None
    base_url: str | None = None
    command: str | None = None
    timeout: float = 1800.0
    max_turns: int = 30
    extra: dict = field(default_factory=dict)


class Agent(ABC):
    """Base class of every agent plugin."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, options: AgentOptions | None = None):
        self.options = options or AgentOptions()

    def announce(self) -> str:
        """One line shown when a run starts."""
        return f"agent: {self.name}"

    def model_name(self) -> str | None:
        """The model behind the proposals, recorded on every experiment (None: no model)."""
        return getattr(self, "model", None) or self.options.model

    def check(self) -> None:
        """Raise ``FatalAgentError`` when the agent cannot work as configured (a missing key, CLI).

        Called before the baseline, so a long measurement is not wasted on an agent that will fail.
        """

    @abstractmethod
    def propose(self, brief: Brief) -> Proposal:
        """Edit the editable files under ``brief.root`` and describe the change."""
