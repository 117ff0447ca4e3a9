"""The workspace's ``autoresearch.yaml``: reading it and building its target."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import registry
from .target import ConfigError, Target
from .workspace import CONFIG_FILE, matches


def target_class(name: str) -> type[Target]:
    known = registry.targets()
    if name not in known:
        raise ConfigError(f"unknown target {name!r}; known targets: {', '.join(known) or 'none'}")
    return known[name]


def read_config(root: Path) -> dict:
    path = root / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing; create it with 'autoresearch init TARGET'") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}; fix it and run again") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must be a mapping of keys to values, starting with 'target:'")
    if not isinstance(config.get("target"), str):
        raise ConfigError(f"{path}: field 'target' is missing; set it to a target name")
    return config


def write_config(root: Path, config: dict) -> Path:
    path = root / CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_target(root: Path) -> Target:
    config = read_config(root)
    return target_class(config["target"]).from_config(config, root)


def pattern_files(patterns: list[str], tracked: list[str]) -> dict[str, list[str]]:
    """The tracked files each pattern resolves to, for ``autoresearch check`` and the checks below."""
    return {pattern: [path for path in tracked if matches(path, [pattern])] for pattern in patterns}


def check_editable(target: Target, tracked: list[str]) -> None:
    """Every editable pattern must match a tracked file, or the agent could change nothing, and no
    file may be both editable and protected, or every change to it would be invalid."""
    for pattern, files in pattern_files(target.editable, tracked).items():
        if not files:
            raise ConfigError(
                f"editable pattern {pattern!r} matches no tracked file; fix 'edit' in {CONFIG_FILE} "
                "or commit the file"
            )
    both = [path for path in tracked if matches(path, target.editable) and matches(path, target.protected)]
    if both:
        raise ConfigError(
            f"{both[0]} is both editable and protected; remove it from 'edit' or 'protect' in {CONFIG_FILE}"
        )


def reject_unknown_fields(config: dict, known: tuple[str, ...]) -> None:
    """A target's ``from_config`` guard: a misspelled key is an error naming it, never ignored."""
    unknown = sorted(set(config) - set(known) - {"target"})
    if unknown:
        raise ConfigError(f"{CONFIG_FILE}: unknown field '{unknown[0]}'; known: {', '.join(known)}")
