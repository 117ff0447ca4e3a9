"""The plugin manager: bundled plugins, entry points, the allow-list, loud failures."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

from autoresearch import hookimpl, registry

from conftest import invoke


def test_bundled_plugins_are_listed_as_json():
    plugins = json.loads(invoke("plugins").output)
    names = {p["name"]: p for p in plugins}
    assert names["autoresearch.plugins.command"]["hooks"] == ["register_targets"]
    assert names["autoresearch.agents.mutate"]["hooks"] == ["register_agents"]
    assert all(p["version"] for p in plugins)


def test_targets_and_agents_listings():
    targets = json.loads(invoke("targets", "--json").output)
    assert any(t["name"] == "command" for t in targets)
    assert all(t["description"] for t in targets)
    agents = json.loads(invoke("agents", "--json").output)
    assert any(a["name"] == "mutate" and a["description"] for a in agents)
    table = invoke("targets").output.splitlines()
    assert table[0].split() == ["name", "description"]


def test_allow_list_limits_loading(monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_LOAD_PLUGINS", "")
    registry.get_manager.cache_clear()
    assert registry.targets() == {} and registry.agents() == {}
    monkeypatch.setenv("AUTORESEARCH_LOAD_PLUGINS", "autoresearch.plugins.command")
    registry.get_manager.cache_clear()
    assert list(registry.targets()) == ["command"] and registry.agents() == {}


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    (tmp_path / "toy_plugin.py").write_text(
        "from autoresearch import hookimpl\n"
        "from autoresearch.plugins.command import CommandTarget\n"
        "class Toy(CommandTarget):\n    name = 'toy'\n    description = 'from an entry point'\n"
        "@hookimpl\ndef register_targets(register):\n    register(Toy)\n"
    )
    dist = tmp_path / "toy_plugin-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[autoresearch]\ntoy = toy_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.get_manager.cache_clear()
    assert "toy" in registry.targets()
    assert {"name": "toy", "hooks": ["register_targets"], "version": "1.2"} in registry.describe()
    monkeypatch.setenv("AUTORESEARCH_LOAD_PLUGINS", "toy")
    registry.get_manager.cache_clear()
    assert list(registry.targets()) == ["toy"]
    sys.modules.pop("toy_plugin", None)


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def register_targetz(self, register):
            pass

    pm = registry.build_manager()
    pm.register(Typo())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_every_hook_is_documented_and_called(toy):
    from autoresearch import hookspecs
    from autoresearch.cli import cli

    hooks = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "autoresearch_spec")]
    assert sorted(hooks) == [
        "experiment_finished",
        "register_agents",
        "register_commands",
        "register_targets",
    ]
    reference = (Path(__file__).parent.parent / "docs" / "plugins" / "hooks.md").read_text()
    for name in hooks:
        spec = getattr(hookspecs, name)
        assert spec.__doc__.strip()
        assert f"\n## {name}{inspect.signature(spec)}\n" in reference

    class Observer:  # the harness calls each observer on its own, so one must exist to be called
        @hookimpl
        def experiment_finished(self, run, experiment):
            pass

    called = set()
    pm = registry.get_manager()
    pm.register(Observer(), "observer")
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: called.add(name), lambda *args: None)
    cli.plugins_loaded = False
    try:
        assert invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t").exit_code == 0
    finally:
        undo()
        pm.unregister(name="observer")
        cli.plugins_loaded = False
    assert called == set(hooks)


def test_register_commands_and_experiment_finished_hooks(toy):
    seen = []

    class Observer:
        @hookimpl
        def register_commands(self, cli):
            @cli.command(name="hello")
            def hello():
                """Say hello."""
                print("hello from a plugin")

        @hookimpl
        def experiment_finished(self, run, experiment):
            seen.append((run["tag"], experiment["number"], experiment["status"]))

    pm = registry.get_manager()
    plugin = Observer()
    pm.register(plugin)
    from autoresearch.cli import cli

    cli.plugins_loaded = False
    try:
        assert "hello from a plugin" in invoke("hello").output
        invoke("run", "--agent", "mutate", "--max-experiments", "2", "--tag", "t")
    finally:
        pm.unregister(plugin)
        cli.commands.pop("hello", None)
        cli.plugins_loaded = False
    assert seen[0] == ("t", 0, "baseline") and [s[1] for s in seen] == [0, 1, 2]


def test_a_failing_observer_neither_ends_the_run_nor_silences_the_others(toy):
    seen = []

    class Recorder:
        @hookimpl
        def experiment_finished(self, run, experiment):
            seen.append(experiment["number"])

    class Broken:
        @hookimpl
        def experiment_finished(self, run, experiment):
            raise RuntimeError(f"no route to host ({experiment['number']})")

    pm = registry.get_manager()
    plugins = {"recorder": Recorder(), "broken": Broken()}  # pluggy calls the last registered first
    for name, plugin in plugins.items():
        pm.register(plugin, name)
    try:
        result = invoke("run", "--agent", "mutate", "--max-experiments", "2", "--tag", "t")
    finally:
        for plugin in plugins.values():
            pm.unregister(plugin)
    assert result.exit_code == 0, result.output
    assert seen == [0, 1, 2]
    for number in range(3):
        line = f"plugin broken: experiment_finished failed (RuntimeError: no route to host ({number}))"
        assert result.output.count(line) == 1
    assert "run t: 2 experiments" in result.output


def test_generated_docs_are_current():
    import subprocess
    from pathlib import Path

    script = Path(__file__).parent.parent / "docs" / "generate.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def installed_plugins(site, **modules: str) -> dict:
    """A site folder holding one distribution whose ``autoresearch`` entry points are ``modules``."""
    info = site / "third_party-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[autoresearch]\n" + "".join(f"{name} = {name}_plugin\n" for name in modules)
    )
    for name, source in modules.items():
        (site / f"{name}_plugin.py").write_text(source)
    return {**os.environ, "PYTHONPATH": str(site)}


def cli_process(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "autoresearch.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


CLASHING_TARGET = """\
from autoresearch import Target, Metric, hookimpl


class Mine(Target):
    name = "command"
    description = "a third-party target that took a bundled name"

    def evaluate(self, root, runner, budget, seed, log_path):
        raise NotImplementedError


@hookimpl
def register_targets(register):
    register(Mine)
"""


def test_a_plugin_that_fails_to_import_is_one_line_and_skipped(tmp_path):
    env = installed_plugins(tmp_path, broken="import no_such_module_anywhere\n", clash=CLASHING_TARGET)
    result = cli_process(env, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout
    assert result.stderr == (
        "autoresearch: plugin 'broken' failed to load (ModuleNotFoundError: No module named "
        "'no_such_module_anywhere'); skipped. Fix or uninstall it, or set AUTORESEARCH_LOAD_PLUGINS "
        "to the plugins to load\n"
    )
    env["AUTORESEARCH_LOAD_PLUGINS"] = "command,mutate"
    assert cli_process(env, "--help").stderr == ""


def test_a_third_party_class_with_a_bundled_name_loses_loudly(tmp_path):
    env = installed_plugins(tmp_path, clash=CLASHING_TARGET)
    result = cli_process(env, "targets", "--json")
    assert result.returncode == 0
    command = next(t for t in json.loads(result.stdout) if t["name"] == "command")
    assert command["description"] != "a third-party target that took a bundled name"
    assert result.stderr == (
        "autoresearch: target 'command' of clash_plugin is ignored: autoresearch.plugins.command "
        "registers that name too; rename one of them\n"
    )


def test_an_allow_list_name_that_matches_nothing_is_warned(monkeypatch, capsys):
    monkeypatch.setenv("AUTORESEARCH_LOAD_PLUGINS", "mutate,mutat")
    monkeypatch.setattr(registry, "_warned", set())
    registry.get_manager.cache_clear()
    assert list(registry.agents()) == ["mutate"]
    assert capsys.readouterr().err == (
        "autoresearch: AUTORESEARCH_LOAD_PLUGINS names 'mutat', which is no bundled plugin or installed "
        "entry point\n"
    )
