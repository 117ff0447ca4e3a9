"""The views of a run (chart, plot, report), finalize, and the run/agent bookkeeping they read."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import sqlite_utils

from autoresearch.history import History, migrations
from autoresearch.views import chart, plot, report
from autoresearch.views.run import RunView

from conftest import MODEL, git, invoke

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def row(number, status, metric=None, description="", **extra) -> dict:
    return {
        "run": "fx",
        "number": number,
        "status": status,
        "metric": metric,
        "description": description,
        "reason": extra.pop("reason", None),
        "samples": [metric] if metric is not None else [],
        "diff": extra.pop("diff", None),
        "started_at": f"2026-01-01T00:{number:02d}:00+00:00",
        "total_seconds": 60.0,
        "measure_seconds": 30.0,
        "input_tokens": 100,
        "output_tokens": 10,
        "cost_usd": 0.01,
        **extra,
    }


@pytest.fixture
def fixture_ledger(tmp_path):
    """A lower-is-better run: baseline 2.0, keeps to 1.0, discards (one off-scale), failures."""
    history = History(tmp_path / "history.db")
    history.create_run("fx", "command", "scripted", {"budget": 60}, {}, "loss", "lower")
    history.update_run("fx", noise=0.05)
    for item in [
        row(0, "baseline", 2.0, "untouched baseline"),
        row(1, "discard", 2.1, "worse"),
        row(2, "keep", 1.5, HOSTILE, diff=f"+X = 2  # {HOSTILE}"),
        row(3, "crash", reason="evaluator exited 1: " + HOSTILE),
        row(4, "discard", 9.0, "far off-scale"),
        row(5, "timeout", reason="over budget"),
        row(6, "keep", 1.0, "second keep"),
        row(7, "invalid", reason="touches evaluate.py"),
    ]:
        history.record(item)
    return history


def view_of(history, direction="lower") -> RunView:
    return RunView(history.run("fx"), "loss", direction, history.experiments("fx"))


def test_pace_for_the_live_status_line(fixture_ledger):
    pace = fixture_ledger.pace("fx")
    assert pace.per_hour == pytest.approx(60.0) and pace.measure_seconds == 30.0
    assert History(fixture_ledger.path.parent / "empty.db").pace("none").per_hour is None


def test_chart_follows_the_original_rules(fixture_ledger):
    drawn = chart.build(view_of(fixture_ledger))
    assert drawn.title == "Autoresearch Progress: 8 Experiments, 2 Kept Improvements"
    assert drawn.y_range == pytest.approx((1.0 - 0.15, 2.0 + 0.15))  # best - 15% of span .. baseline + 15%
    assert [(p.number, p.status) for p in drawn.points] == [
        (0, "baseline"),
        (1, "discard"),
        (2, "keep"),
        (6, "keep"),
    ]
    assert [(x, status) for x, status, _ in drawn.rug] == [(3, "crash"), (5, "timeout"), (7, "invalid")]
    assert drawn.best == [
        (0, 2.0),
        (2, 2.0),
        (2, 1.5),
        (6, 1.5),
        (6, 1.0),
        (7, 1.0),
    ]  # a step line to the end
    assert [p.number for p in drawn.labels] == [2, 6]


def test_chart_is_direction_aware_and_can_show_wall_clock():
    def at(number, status, metric, minutes):
        return {"number": number, "status": status, "metric": metric, "description": f"#{number}",
                "started_at": "2026-01-01T00:00:00+00:00", "finished_at": f"2026-01-01T{minutes // 60:02d}:"
                f"{minutes % 60:02d}:00+00:00"}  # fmt: skip

    rows = [
        at(0, "baseline", 0.5, 30),
        at(1, "keep", 0.7, 60),
        at(2, "discard", 0.6, 75),
        at(3, "keep", 0.9, 90),
    ]
    view = RunView({"noise": 0.1}, "accuracy", "higher", rows)
    drawn = chart.build(view, x="time")
    assert drawn.y_label == "accuracy (higher is better)" and drawn.x_label == "Wall clock (hours)"
    assert drawn.y_range == pytest.approx((0.5 - 0.06, 0.9 + 0.06))
    assert [p.x for p in drawn.points] == [0.5, 1.0, 1.25, 1.5]
    assert drawn.best == [(0.5, 0.5), (1.0, 0.5), (1.0, 0.7), (1.5, 0.7), (1.5, 0.9), (1.5, 0.9)]
    gains = [(item["gain"], item["sigmas"]) for item in view.improvements()]
    assert gains == [pytest.approx((0.2, 2.0)), pytest.approx((0.2, 2.0))]
    assert view.kpis()["change_percent"] == pytest.approx(80.0)


def test_svg_escapes_ledger_text(fixture_ledger):
    text = chart.svg(chart.build(view_of(fixture_ledger)))
    assert "<script" not in text and "<img" not in text and "&lt;script&gt;" in text
    assert text.count('class="point keep"') == 2 and text.count('class="rug ') == 3


def test_plot_figure_structure(fixture_ledger):
    figure = plot.figure(chart.build(view_of(fixture_ledger)))
    ax = figure.axes[0]
    assert ax.get_title() == "Autoresearch Progress: 8 Experiments, 2 Kept Improvements"
    assert ax.get_ylim() == pytest.approx((0.85, 2.15))
    scatters = {c.get_label(): len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets")}
    assert scatters["Discarded"] == 1 and scatters["Kept"] == 3
    assert [t.get_text() for t in ax.texts] == [chart.short(HOSTILE), "second keep"]
    assert {c.get_label() for c in ax.collections} >= {"crash", "timeout", "invalid"}


class Structure(HTMLParser):
    """Counts tags and collects text, the way a browser would parse the report."""

    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_data(self, data):
        self.text.append(data)


def test_report_is_self_contained_and_escaped(fixture_ledger, tmp_path):
    html = report.render(view_of(fixture_ledger))
    parsed = Structure()
    parsed.feed(html)
    assert parsed.tags.get("script") is None and parsed.tags.get("img") is None  # text, never markup
    assert HOSTILE in "".join(parsed.text)  # shown as the text it is
    assert not re.search(r"(src|href)=\"?https?:", html)  # no network
    assert parsed.tags["svg"] == 1 and parsed.tags["details"] == 8
    assert "default-src 'none'" in html
    text = " ".join("".join(parsed.text).split())
    for card in ("2 → 1", "-50.00%", "7 (2 kept)", "29%", "14%", "60.0", "0.07", "880", "$0.08", "0.05"):
        assert card in text, card
    # kept improvements: gain over the previous keep and gain / sigma
    assert "<td>2 → 1.5</td><td>+0.5</td><td>10.0</td>" in html
    assert "<td>1.5 → 1</td><td>+0.5</td><td>10.0</td>" in html


def test_plot_report_commands_on_a_real_run(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "6", "--tag", "t", "--accept", "strict")
    result = invoke("plot", "--out", str(toy / ".autoresearch" / "p.png"))
    assert result.exit_code == 0 and "7 Experiments" in result.output
    assert (toy / ".autoresearch" / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert invoke("plot", "--x", "time", "--out", str(toy / ".autoresearch" / "t.svg")).exit_code == 0
    assert invoke("report", "--out", str(toy / ".autoresearch" / "r.html")).exit_code == 0
    html = (toy / ".autoresearch" / "r.html").read_text()
    assert html.count('<details class="experiment"') == 7 and "diff --git a/model.py" in html
    assert html.count('<pre class="log">') == 7 and "loss:" in html  # log paths are relative to the workspace


def test_plot_without_matplotlib_is_one_line(toy, monkeypatch):
    invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t", "--accept", "strict")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = invoke("plot")
    assert result.exit_code == 1
    assert result.output == "Error: the plot needs matplotlib: pip install matplotlib (the 'plot' extra)\n"


def test_finalize_replays_kept_changes_on_a_new_branch(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "12", "--tag", "t", "--accept", "strict")
    history = History(toy / ".autoresearch" / "history.db")
    kept = history.experiments("t", "keep")
    baseline = history.experiments("t", "baseline")[0]
    assert len(kept) >= 2
    before = {ref: git(toy, "rev-parse", ref) for ref in ("HEAD", "autoresearch/t")}
    ledger_before = (toy / ".autoresearch" / "history.db").read_bytes()
    result = invoke("finalize", "--branch", "clean")
    assert result.exit_code == 0, result.output
    assert f"branch clean: {len(kept)} commit(s)" in result.output
    subjects = git(toy, "log", "--format=%s", f"{baseline['commit']}..clean").splitlines()[::-1]
    assert subjects == [r["description"] for r in kept]
    body = git(toy, "log", "-1", "--format=%B", "clean")
    last = kept[-1]
    assert f"experiment {last['number']}" in body and f"→ {last['metric']:.6g}" in body and "gain" in body
    assert git(toy, "rev-parse", "clean^{tree}") == git(toy, "rev-parse", "autoresearch/t^{tree}")
    assert git(toy, "merge-base", "clean", baseline["commit"]) == baseline["commit"]
    squashed = invoke("finalize", "--branch", "one", "--squash")
    assert squashed.exit_code == 0 and "1 commit(s)" in squashed.output
    assert git(toy, "rev-parse", "one^") == baseline["commit"]
    assert git(toy, "rev-parse", "one^{tree}") == git(toy, "rev-parse", "autoresearch/t^{tree}")
    refused = invoke("finalize", "--branch", "clean")
    assert refused.exit_code == 1 and "exists already" in refused.output
    assert invoke("finalize", "--branch", "bad..name").exit_code == 1
    # the user's checkout, the run branch and the ledger are untouched
    assert {ref: git(toy, "rev-parse", ref) for ref in before} == before
    assert git(toy, "status", "--porcelain", "--untracked-files=no") == ""
    assert (toy / ".autoresearch" / "history.db").read_bytes() == ledger_before


def test_migration_adds_agents_and_invocations():
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    assert {"agent", "model"} <= set(db["experiments"].columns_dict)
    assert set(db["invocations"].columns_dict) == {
        "id",
        "run",
        "agent",
        "model",
        "options",
        "started_at",
        "ended_at",
    }


def test_every_row_and_invocation_records_its_agent(toy, scripted):
    scripted += [{"model.py": MODEL.replace("X = 3.0", "X = 2.0"), "_description": "by scripted"}]
    invoke("run", "--agent", "scripted", "--max-experiments", "1", "--tag", "t", "--accept", "strict")
    invoke(
        "run",
        "--agent",
        "mutate",
        "--max-experiments",
        "1",
        "--tag",
        "t",
        "--accept",
        "strict",
        "--model",
        "m1",
    )
    rows = json.loads(invoke("log", "--json").output)
    assert [(r["agent"], r["model"]) for r in rows] == [(None, None), ("scripted", None), ("mutate", "m1")]
    listed = json.loads(invoke("runs", "--json").output)
    assert [run["tag"] for run in listed] == ["t"] and listed[0]["experiments"] == 3
    invocations = listed[0]["invocations"]
    assert [(i["agent"], i["model"]) for i in invocations] == [("scripted", None), ("mutate", "m1")]
    assert all(i["started_at"] <= i["ended_at"] for i in invocations)
    assert invocations[1]["options"]["max_experiments"] == 1
    table = invoke("runs").output
    assert "scripted, mutate" in table


def test_log_limit_and_follow(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "4", "--tag", "t", "--accept", "strict")
    assert [r["number"] for r in json.loads(invoke("log", "--json", "-n", "2").output)] == [3, 4]
    follow = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "log", "--follow", "--json", "--limit", "1"],
        cwd=toy, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert json.loads(follow.stdout.readline())["number"] == 4
        invoke("run", "--agent", "mutate", "--max-experiments", "2", "--tag", "t", "--accept", "strict")
        assert [json.loads(follow.stdout.readline())["number"] for _ in range(2)] == [5, 6]
    finally:
        follow.terminate()
        follow.wait(timeout=30)
