"""The brief: every section filled, steerable by program.md, bounded however long the run."""

from pathlib import Path

from autoresearch.brief import BriefSettings, brief_values, program_text, render
from autoresearch.config import load_target

from conftest import invoke


def fake_rows(n: int) -> list[dict]:
    return [
        {
            "number": i,
            "status": "discard" if i % 3 else "crash",
            "metric": 1.0 + i / 1000,
            "description": f"idea number {i} " + "x" * 50,
            "reason": "exit code 1",
            "commit": "abc",
            "log_path": None,
        }
        for i in range(1, n + 1)
    ]


def render_at(root: Path, n: int) -> str:
    target = load_target(root)
    settings = BriefSettings()
    rows = fake_rows(n)
    values = brief_values(
        root,
        target,
        ["model.py", "evaluate.py"],
        rows[-settings.history :],
        [r for r in rows if r["status"] == "discard"][-settings.discarded :],
        {"number": 0, "metric": 1.0, "commit": "abcdef123"},
        rows[-1],
        20,
        0.01,
        settings,
    )
    return render(program_text(root, target), values)


def test_brief_has_every_section(toy):
    text = render_at(toy, 6)
    for needle in (
        "# Research program: command",
        "`loss` (lower is better)",
        "20 seconds",
        "±0.01",
        "loss = 1 (experiment 0, commit abcdef1)",
        "### model.py",
        "X = 3.0",
        "- evaluate.py",
        "| 6 | crash (exit code 1)",
        "idea number 5",
        "Experiment 6 (crash: exit code 1)",
    ):
        assert needle in text, needle
    assert "{{" not in text
    head, volatile = text.split("<!-- volatile -->")
    assert "X = 3.0" in head and "Recent experiments" in volatile


def test_brief_size_does_not_grow_with_the_ledger(toy):
    small, large, larger = render_at(toy, 10), render_at(toy, 1000), render_at(toy, 2000)
    # from 10 to 1,000 experiments only the window fills up (15 rows, 10 discarded ideas) ...
    assert len(large) - len(small) < 1500
    # ... and past it nothing grows but the width of the experiment numbers
    assert abs(len(larger) - len(large)) < 50


def test_workspace_program_md_steers_a_running_loop(toy):
    (toy / "program.md").write_text("Only try X. Best so far: {{ incumbent }}\n")
    assert render_at(toy, 1).startswith("Only try X. Best so far: loss = 1")


def test_brief_command_prints_the_next_brief(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t")
    out = invoke("brief").output
    assert "| 1 |" in out and "## Editable files" in out
