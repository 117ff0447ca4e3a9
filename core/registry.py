"""The plugin manager: bundled plugins, the ``autoresearch`` entry-point group, an allow-list."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from functools import cache

import pluggy

from . import hookspecs

DEFAULT_PLUGINS = (
    "autoresearch.plugins.command",
    "autoresearch.agents.mutate",
    "autoresearch.agents.anthropic",
    "autoresearch.agents.command",
    "autoresearch.agents.openai",
    "autoresearch.plugins.nanochat_bpb",
)
LOAD_ENV = "AUTORESEARCH_LOAD_PLUGINS"  # comma-separated module or entry-point names; empty: none
TRACE_ENV = "AUTORESEARCH_TRACE_HOOKS"  # any value prints every hook call to stderr
ENTRY_POINTS = "autoresearch"  # the entry-point group of third-party plugins
_warned: set[str] = set()


def build_manager() -> pluggy.PluginManager:
    """A fresh manager with the bundled and installed plugins, filtered by the allow-list.

    An installed plugin that fails to import is skipped with one line on stderr, so one broken
    package cannot take every command (``--help`` included) down with it.
    """
    pm = pluggy.PluginManager("autoresearch")
    pm.add_hookspecs(hookspecs)
    allowed = os.environ.get(LOAD_ENV)
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for name in DEFAULT_PLUGINS:  # by module or short name: "mutate", "autoresearch.agents.mutate"
        if allow is None or name in allow or name.rsplit(".", 1)[-1] in allow:
            pm.register(importlib.import_module(name), name)
    installed = sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)})
    for name in installed:
        if allow is None or name in allow:
            try:
                pm.load_setuptools_entrypoints(ENTRY_POINTS, name=name)
            except Exception as error:  # any import-time failure of someone else's code
                warn(
                    f"plugin {name!r} failed to load ({type(error).__name__}: {error}); skipped. Fix or "
                    f"uninstall it, or set {LOAD_ENV} to the plugins to load"
                )
    if allow is not None:
        known = set(DEFAULT_PLUGINS) | {n.rsplit(".", 1)[-1] for n in DEFAULT_PLUGINS} | set(installed)
        for name in sorted(allow - known):
            warn(f"{LOAD_ENV} names {name!r}, which is no bundled plugin or installed entry point")
    pm.check_pending()
    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def warn(message: str) -> None:
    """One line on stderr, once per process."""
    if message not in _warned:
        _warned.add(message)
        print(f"autoresearch: {message}", file=sys.stderr)


@cache
def get_manager() -> pluggy.PluginManager:
    return build_manager()


def _collect(hook, kind: str) -> dict:
    """Classes by name; on a clash a bundled class wins, and the loser is named on stderr."""
    found: dict = {}

    def register(cls):
        other = found.setdefault(cls.name, cls)
        if other is not cls:
            keep, lose = (cls, other) if _bundled(cls) and not _bundled(other) else (other, cls)
            found[cls.name] = keep
            warn(
                f"{kind} {cls.name!r} of {lose.__module__} is ignored: {keep.__module__} registers "
                "that name too; rename one of them"
            )

    hook(register=register)
    return dict(sorted(found.items()))


def _bundled(cls) -> bool:
    return cls.__module__ in DEFAULT_PLUGINS


def targets() -> dict:
    """Registered target classes by name."""
    return _collect(get_manager().hook.register_targets, "target")


def agents() -> dict:
    """Registered agent classes by name."""
    return _collect(get_manager().hook.register_agents, "agent")


def experiment_finished(run: dict, experiment: dict, warn) -> None:
    """Call every ``experiment_finished`` observer on its own: one that raises is reported with
    ``warn`` (one line) and neither ends the run nor keeps the others from being called."""
    pm = get_manager()
    plugins = [impl.plugin for impl in reversed(pm.hook.experiment_finished.get_hookimpls())]
    for plugin in plugins:
        alone = pm.subset_hook_caller("experiment_finished", [p for p in plugins if p is not plugin])
        try:
            alone(run=run, experiment=experiment)
        except Exception as error:
            name = pm.get_name(plugin)
            warn(f"plugin {name}: experiment_finished failed ({type(error).__name__}: {error}); going on")


def describe() -> list[dict]:
    """Every loaded plugin with its hooks and version, for ``autoresearch plugins``."""
    pm = get_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    own_version = importlib.metadata.version("autoresearch")
    rows = []
    for plugin in pm.get_plugins():
        dist = dists.get(id(plugin))
        rows.append(
            {
                "name": pm.get_name(plugin),
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
                "version": dist.version if dist else own_version,
            }
        )
    return sorted(rows, key=lambda r: r["name"])
