"""The generic target: edit these files, run this command, read this metric (from YAML)."""

from __future__ import annotations

from pathlib import Path

from autoresearch import ConfigError, Measurement, Metric, Target, hookimpl
from autoresearch.config import reject_unknown_fields
from autoresearch.measure import Evaluation, measurement

FIELDS = (
    "edit", "protect", "run", "metric", "direction", "noise", "budget", "startup", "evaluation", "curve",
    "throughput", "seed", "env", "network", "gpu",
)  # fmt: skip


def _globs(config: dict, key: str, required: bool) -> list[str]:
    value = config.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"autoresearch.yaml: field '{key}' must be a list of glob patterns")
    if required and not value:
        raise ConfigError(f"autoresearch.yaml: field '{key}' is missing; give at least one glob (--{key})")
    return value


def _curve(config: dict) -> tuple[Metric | None, str | None]:
    """``curve: train_loss`` (lower is better) or ``curve: {key: accuracy, direction: higher}``,
    optionally with ``work: tokens``, the progress key counting the work done so far."""
    value = config.get("curve")
    if value is None:
        return None, None
    if isinstance(value, str) and value:
        return Metric(value, "lower"), None
    fields = {"key", "direction", "work"}
    if isinstance(value, dict) and isinstance(value.get("key"), str) and set(value) <= fields:
        work = value.get("work")
        if work is None or (isinstance(work, str) and work):
            return Metric(value["key"], str(value.get("direction", "lower"))), work
    raise ConfigError(
        "autoresearch.yaml: field 'curve' must name a progress key, e.g. 'curve: train_loss' or "
        "'curve: {key: accuracy, direction: higher, work: samples}'"
    )


def _number(config: dict, key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"autoresearch.yaml: field '{key}' must be a positive number of seconds")
    return float(value)


class CommandTarget(Target):
    name = "command"
    description = "Any git repo: edit files matching globs, run a command, read 'metric: value' after '---'."
    in_place = True

    def __init__(self, command: str, network: bool = False, gpu: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.command = command
        self.network = network  # the sandbox cuts the network unless autoresearch.yaml says so
        self.gpu = gpu  # a Ray task asks for a GPU for each measurement

    @classmethod
    def from_config(cls, config: dict, root: Path) -> CommandTarget:
        reject_unknown_fields(config, FIELDS)
        command = config.get("run")
        if not isinstance(command, str) or not command.strip():
            raise ConfigError("autoresearch.yaml: field 'run' is missing; set it to the evaluator command")
        metric = config.get("metric")
        if not isinstance(metric, str) or not metric:
            raise ConfigError("autoresearch.yaml: field 'metric' is missing; name the key the command prints")
        env = config.get("env") or []
        if not isinstance(env, list):
            raise ConfigError("autoresearch.yaml: field 'env' must be a list of variable names")
        network, gpu = config.get("network", False), config.get("gpu", False)
        curve, curve_work = _curve(config)
        for key, value in (("network", network), ("gpu", gpu)):
            if not isinstance(value, bool):
                raise ConfigError(f"autoresearch.yaml: field '{key}' must be true or false")
        return cls(
            command=command,
            network=network,
            gpu=gpu,
            metric=Metric(
                metric, str(config.get("direction", "lower")), str(config.get("noise", "absolute"))
            ),
            editable=_globs(config, "edit", required=True),
            protected=_globs(config, "protect", required=False) + ["autoresearch.yaml"],
            budget=_number(config, "budget", 60),
            startup_seconds=_number(config, "startup", 10),
            eval_seconds=_number(config, "evaluation", 10),
            takes_seed=bool(config.get("seed", False)),
            env_passthrough=env,
            curve=curve,
            curve_work=curve_work,
            throughput=config.get("throughput") if isinstance(config.get("throughput"), str) else None,
        )

    @classmethod
    def default_config(cls, options: dict) -> dict:
        config = {
            "edit": list(options.get("edit") or []),
            "protect": list(options.get("protect") or []),
            "run": options.get("run"),
            "metric": options.get("metric"),
            "direction": options.get("direction") or "lower",
            "budget": options.get("budget") or 60,
        }
        return {key: value for key, value in config.items() if value not in (None, [])}

    def evaluate(self, evaluation: Evaluation) -> Measurement:
        env = {"AUTORESEARCH_BUDGET": f"{evaluation.budget:g}"}
        if evaluation.seed is not None:
            env["AUTORESEARCH_SEED"] = str(evaluation.seed)
        return measurement(evaluation.run(self.command, env=env), self.metric.name)


@hookimpl
def register_targets(register):
    register(CommandTarget)
