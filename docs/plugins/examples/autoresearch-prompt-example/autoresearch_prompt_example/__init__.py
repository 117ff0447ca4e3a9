"""The prompt_example target: raise a prompt template's accuracy on labelled support messages.

The evaluator (``evaluate.py``) runs the template over ``train.jsonl`` through the Anthropic API.
The held-out split stays in this package, outside the workspace, so the agent never sees it;
``autoresearch prompt-example heldout`` scores a run's prompts on it (``heldout.py``).
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

from autoresearch import ConfigError, Measurement, Metric, Target, hookimpl
from autoresearch.config import reject_unknown_fields
from autoresearch.measure import Evaluation, measurement

DATA = resources.files(__package__) / "data"
DEFAULT_MODEL = "claude-haiku-4-5"
KEY_ENV = "ANTHROPIC_API_KEY"
FIELDS = ("model", "base_url", "budget")  # of autoresearch.yaml, besides target


class PromptExample(Target):
    name = "prompt_example"
    network = True  # the evaluator calls the Anthropic API
    description = "Raise a prompt template's accuracy at labelling support messages (Anthropic API)."
    objective = (
        "Raise accuracy: the share of messages in train.jsonl for which the model's reply to "
        "prompt.txt, with {text} replaced by the message, starts with the message's label "
        "(billing, shipping, technical or account). Keep the {text} placeholder."
    )

    def __init__(self, model: str = DEFAULT_MODEL, base_url: str | None = None, budget: float = 120):
        super().__init__(
            metric=Metric("accuracy", "higher"),
            editable=["prompt.txt"],
            protected=["train.jsonl"],
            budget=budget,
            startup_seconds=30,
            env_passthrough=[KEY_ENV],  # the harness removes API keys from the evaluator's env otherwise
        )
        self.model = model
        self.base_url = base_url

    @classmethod
    def from_config(cls, config: dict, root: Path) -> PromptExample:
        reject_unknown_fields(config, FIELDS)
        return cls(config.get("model", DEFAULT_MODEL), config.get("base_url"), config.get("budget", 120))

    @classmethod
    def default_config(cls, options: dict) -> dict:
        """``-o model=...`` and ``-o base_url=...`` at ``init``/``run`` land in autoresearch.yaml."""
        config = {"model": options.get("model", DEFAULT_MODEL)}
        if options.get("base_url"):
            config["base_url"] = options["base_url"]
        return config

    @classmethod
    def scaffold(cls, root: Path, options: dict) -> dict:
        for name in ("prompt.txt", "train.jsonl"):
            (root / name).write_text((DATA / name).read_text())
        return cls.default_config(options)

    def prepare(self, root: Path | None, echo=print) -> None:
        if not os.environ.get(KEY_ENV):
            raise ConfigError(f"{KEY_ENV} is not set: the evaluator calls the Anthropic API; export it first")

    def evaluate(self, evaluation: Evaluation) -> Measurement:
        argv = [sys.executable, "-m", "autoresearch_prompt_example.evaluate", "prompt.txt", "train.jsonl"]
        argv += ["--model", self.model] + (["--base-url", self.base_url] if self.base_url else [])
        return measurement(evaluation.run(argv), self.metric.name)


@hookimpl
def register_targets(register):
    register(PromptExample)


@hookimpl
def register_commands(cli):
    from .heldout import heldout

    @cli.group(name="prompt-example")
    def prompt_example():
        """Commands of the prompt_example target."""

    prompt_example.add_command(heldout)
