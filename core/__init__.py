"""autoresearch: metric ratchets driven by an agent, with git as the state and SQLite as the ledger."""

from .agent import Agent, AgentError, AgentExhausted, AgentOptions, Brief, FatalAgentError, Proposal
from .hookspecs import hookimpl
from .target import ConfigError, Measurement, Metric, Target

__all__ = [
    "Agent",
    "AgentError",
    "AgentExhausted",
    "AgentOptions",
    "Brief",
    "ConfigError",
    "FatalAgentError",
    "Measurement",
    "Metric",
    "Proposal",
    "Target",
    "hookimpl",
]
