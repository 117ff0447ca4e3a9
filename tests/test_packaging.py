"""The distribution declares what its code imports."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
tomllib = pytest.importorskip("tomllib")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one file, less its own folder's modules."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {sibling.stem for sibling in path.parent.glob("*.py")}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [req for group in project.get("optional-dependencies", {}).values() for req in group]
    declared = {canonical(re.split(r"[<>=!~ ;\[]", req)[0]) for req in project["dependencies"] + extras}
    distributions = importlib.metadata.packages_distributions()
    files = [*ROOT.joinpath("core").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]
    undeclared = set()
    for path in files:
        for name in imported_modules(path) - set(sys.stdlib_module_names) - {"autoresearch"}:
            if not declared & {canonical(dist) for dist in distributions.get(name, [name])}:
                undeclared.add(f"{name} ({path.relative_to(ROOT)})")
    assert not undeclared, (
        f"imported but not in pyproject.toml's dependencies or extras: {sorted(undeclared)}"
    )
