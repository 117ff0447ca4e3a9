"""Every bundled program template renders to a well-formed brief."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from autoresearch.brief import PLACEHOLDER, VOLATILE_MARKER, BriefSettings, brief_values, render
from autoresearch.plugins.nanochat_bpb import TEMPLATE_DIR, NanochatBpb

TEMPLATES = sorted(
    entry.name for entry in resources.files("autoresearch.program_templates").iterdir()
    if entry.name.endswith(".md")
)
MULTILINE = ("editable_files", "protected_files", "history", "discarded", "last_failure")


@pytest.fixture(scope="module")
def values(tmp_path_factory) -> dict[str, str]:
    """The placeholders' text for a nanochat workspace with a history and a failure."""
    root = tmp_path_factory.mktemp("ws")
    for name in ("train.py", "prepare.py"):
        (root / name).write_text((TEMPLATE_DIR / name).read_text())
    (root / "program.md").write_text("program")
    (root / "run.log").write_text("Traceback\nValueError: shapes\n")
    config = NanochatBpb.default_config({"preset": "cpu", "corpus": "stdlib"})
    row = {"number": 1, "status": "crash", "metric": None, "description": "deeper", "reason": "exit 1",
           "commit": "abc1234", "log_path": str(root / "run.log")}
    incumbent = {"number": 0, "metric": 2.5, "commit": "0123456789"}
    return brief_values(root, NanochatBpb(config), ["prepare.py", "program.md", "train.py"], [row], [row],
                        incumbent, row, 300.0, 0.01, BriefSettings())


@pytest.mark.parametrize("name", TEMPLATES)
def test_bundled_template_renders_a_well_formed_brief(name, values):
    template = resources.files("autoresearch.program_templates").joinpath(name).read_text()
    for line in template.splitlines():  # multi-line values stand on lines of their own
        for key in PLACEHOLDER.findall(line):
            assert key in values, f"{name}: unknown placeholder {key}"
            if key in MULTILINE:
                assert line.strip() == f"{{{{ {key} }}}}", f"{name}: {key} inside a sentence: {line!r}"
    brief = render(template, values)
    assert "{{" not in brief and "}}" not in brief
    train = (TEMPLATE_DIR / "train.py").read_text()
    assert brief.count(train) == 1, "train.py's text appears exactly once"
    assert "seconds seconds" not in brief and "300 seconds" in brief
    assert re.search(r"^- prepare\.py$", brief, re.MULTILINE) and re.search(r"^- program\.md$", brief, re.M)
    assert brief.count(VOLATILE_MARKER) <= 1
    if VOLATILE_MARKER in brief:  # what changes every experiment comes after the marker
        assert brief.index(VOLATILE_MARKER) < brief.index("ValueError: shapes")
