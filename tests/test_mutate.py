"""The offline mutate agent."""

from pathlib import Path

import pytest

from autoresearch import AgentExhausted, Brief
from autoresearch.agents.mutate import MutateAgent, attempted, find_constants, format_number, neighbours

SOURCE = """\
# ---- hyperparameters
MATRIX_LR = 0.04      # learning rate
DEPTH = 8             # layers
B = -2
USE_X = True
name = 3
WINDOW = "SSSL"
def f():
    INNER = 5
"""


def test_finds_module_level_numeric_constants_only():
    found = {(c.name, c.value) for c in find_constants("train.py", SOURCE)}
    assert found == {("MATRIX_LR", 0.04), ("DEPTH", 8), ("B", -2)}


def test_steps():
    assert neighbours(8) == [9, 7, 16, 4]
    assert neighbours(1) == [2]
    assert neighbours(0.04) == [0.02, 0.032, 0.05, 0.08]
    assert neighbours(0.0) == []
    assert format_number(1e-10) == "1e-10" and format_number(2.0) == "2.0"


def brief(root: Path, descriptions=(), seed=0) -> Brief:
    return Brief("", root, ["train.py"], [], list(descriptions), None, seed)


def test_proposal_edits_one_constant_in_place(tmp_path):
    (tmp_path / "train.py").write_text(SOURCE)
    proposal = MutateAgent().propose(brief(tmp_path, seed=3))
    name, old, _, new = proposal.description.split()
    after = (tmp_path / "train.py").read_text()
    changed = [(a, b) for a, b in zip(SOURCE.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith(name) and new in changed[0][1]
    assert "# learning rate" in after  # comments and alignment kept


def test_never_repeats_and_gives_up_cleanly(tmp_path):
    (tmp_path / "train.py").write_text("LR = 0.04\n")
    descriptions = []
    for seed in range(4):
        (tmp_path / "train.py").write_text("LR = 0.04\n")
        descriptions.append(MutateAgent().propose(brief(tmp_path, descriptions, seed)).description)
    assert len(set(descriptions)) == 4
    assert attempted(descriptions) == {("LR", v) for v in ("0.02", "0.032", "0.05", "0.08")}
    (tmp_path / "train.py").write_text("LR = 0.04\n")
    with pytest.raises(AgentExhausted, match="tried already"):
        MutateAgent().propose(brief(tmp_path, descriptions))


def test_seeded(tmp_path):
    results = set()
    for _ in range(3):
        (tmp_path / "train.py").write_text(SOURCE)
        results.add(MutateAgent().propose(brief(tmp_path, seed=7)).description)
    assert len(results) == 1


def test_non_ascii_line_offsets(tmp_path):
    (tmp_path / "train.py").write_text("LR = 0.04  # ünïcödé\n")
    MutateAgent().propose(brief(tmp_path))
    assert (tmp_path / "train.py").read_text().endswith("  # ünïcödé\n")
