"""Docs that carry code: every hook documented, its example run, the tutorial equal to the example."""

import inspect
import re
import subprocess
import types
from contextlib import contextmanager
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from autoresearch import Brief, Proposal, hookspecs, registry
from autoresearch.history import History
from autoresearch.measure import Runner

from conftest import git

ROOT = Path(__file__).parent.parent
HOOKS_MD = ROOT / "docs" / "plugins" / "hooks.md"
TUTORIAL = ROOT / "docs" / "plugins" / "tutorial.md"
PERF_EXAMPLE = ROOT / "docs" / "plugins" / "examples" / "autoresearch-perf-example"
HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "autoresearch_spec"))
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TITLE = re.compile(r'title="([^"]+)"')
EXCERPT = re.compile(r'excerpt="([^"]+)"')


def code_blocks(markdown: str) -> list[tuple[str, str, str]]:
    """(language, info after the language, code) of every fenced block."""
    return FENCE.findall(markdown)


def signature(hook: str) -> str:
    return f"{hook}({', '.join(inspect.signature(getattr(hookspecs, hook)).parameters)})"


def hook_section(hook: str) -> str:
    """The text under ``## hook(args)`` in hooks.md, up to the next heading of that level."""
    parts = re.split(r"^## (.+)$", HOOKS_MD.read_text(), flags=re.MULTILINE)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert signature(hook) in sections, f"docs/plugins/hooks.md has no section '## {signature(hook)}'"
    return sections[signature(hook)]


def example_plugin(hook: str) -> types.ModuleType:
    """The hook's example, executed as a plugin module of its own."""
    examples = [code for language, _, code in code_blocks(hook_section(hook)) if language == "python"]
    assert len(examples) == 1, f"hooks.md: give {hook} exactly one python example"
    module = types.ModuleType(f"hooks_md_{hook}")
    exec(compile(examples[0], f"hooks.md ({hook})", "exec"), module.__dict__)
    return module


@contextmanager
def registered(plugin):
    pm = registry.get_manager()
    pm.register(plugin)
    pm.check_pending()
    try:
        yield pm
    finally:
        pm.unregister(plugin)


def own(classes: dict, plugin) -> list:
    return [cls for cls in classes.values() if cls.__module__ == plugin.__name__]


# ---- running each hook's example the way autoresearch calls the hook


def exercise_register_targets(plugin, tmp_path, capsys):
    with registered(plugin):
        (target_class,) = own(registry.targets(), plugin)
    (tmp_path / "README.md").write_text("three little words\n")
    target = target_class.from_config({"target": target_class.name}, tmp_path)
    measurement = target.evaluate(tmp_path, Runner(), target.budget, None, tmp_path / "log")
    assert (measurement.status, measurement.metric) == ("ok", 3.0)


def exercise_register_agents(plugin, tmp_path, capsys):
    with registered(plugin):
        (agent_class,) = own(registry.agents(), plugin)
    (tmp_path / "notes.txt").write_text("trailing   \nspaces\t\n")
    brief = Brief(text="Tidy up.", root=tmp_path, editable=["notes.txt"], protected=[])
    proposal = agent_class().propose(brief)
    assert isinstance(proposal, Proposal) and proposal.description
    assert (tmp_path / "notes.txt").read_text() == "trailing\nspaces\n"


def exercise_register_commands(plugin, tmp_path, capsys):
    cli = click.Group("autoresearch")
    with registered(plugin) as pm:
        pm.hook.register_commands(cli=cli)
    (command,) = [c for c in cli.commands.values() if c.callback.__module__ == plugin.__name__]
    result = CliRunner().invoke(cli, [command.name])
    assert result.exit_code == 0 and result.output.strip(), result.output


def exercise_experiment_finished(plugin, tmp_path, capsys):
    history = History(tmp_path / "history.db")
    run = history.create_run("t", "word_count", "strip", {}, {}, "words", "lower")
    with registered(plugin) as pm:
        for number, status, metric in [(0, "baseline", 12.0), (1, "keep", 9.0), (2, "discard", 10.0)]:
            experiment = history.record({"run": "t", "number": number, "status": status, "metric": metric})
            pm.hook.experiment_finished(run=run, experiment=experiment)
    assert capsys.readouterr().out == "t: experiment 1 kept, metric 9\n"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_its_example_runs(hook, tmp_path, capsys):
    exercise = globals().get(f"exercise_{hook}")
    assert exercise, f"add exercise_{hook} to tests/test_docs.py, calling the hook as autoresearch does"
    exercise(example_plugin(hook), tmp_path, capsys)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_that_implements_it(hook):
    """As datasette checks its hooks: a test plugin somewhere in tests/ (this file aside) implements it."""
    sources = [path.read_text() for path in Path(__file__).parent.glob("*.py") if path.name != "test_docs.py"]
    assert any(f"def {hook}(" in source for source in sources), f"no test implements the hook {hook}"


# ---- the tutorial


def titled_blocks() -> dict[str, str]:
    """The tutorial's ``title="path"`` blocks: whole files of the example."""
    blocks = code_blocks(TUTORIAL.read_text())
    return {TITLE.search(info).group(1): code for _, info, code in blocks if TITLE.search(info)}


def test_tutorial_shows_every_file_of_the_perf_example_exactly():
    shown = titled_blocks()
    files = git(PERF_EXAMPLE, "ls-files", "--cached", "--others", "--exclude-standard").split()
    committed = {path: (PERF_EXAMPLE / path).read_text() for path in files}
    assert sorted(shown) == sorted(committed), "the tutorial and docs/plugins/examples differ in files"
    for path, text in committed.items():
        assert shown[path] == text, f"tutorial.md's {path} differs from the committed file"


def test_tutorial_excerpts_are_quoted_exactly():
    excerpts = [(EXCERPT.search(info), code) for _, info, code in code_blocks(TUTORIAL.read_text())]
    quoted = [(match.group(1), code) for match, code in excerpts if match]
    assert quoted, "the tutorial quotes no test"
    for path, code in quoted:
        assert code in (ROOT / path).read_text(), f"tutorial.md quotes {path}, which no longer has that code"


def test_ci_runs_the_readmes_two_setup_commands():
    """.ci/run extracts the README's setup block with this awk program and runs what it prints."""
    program = re.search(
        r"readme_commands=\$\(awk '(.*?)' README.md\)", (ROOT / ".ci" / "run").read_text(), re.S
    )
    lines = subprocess.run(
        ["awk", program.group(1), "README.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("python3 -m venv .venv") and lines[0].endswith(
        "&& autoresearch run nanochat_bpb"
    )
    assert "docs/plugins/examples/autoresearch-perf-example" in lines[1] and lines[1].endswith("&& pytest")
