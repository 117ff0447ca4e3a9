"""The live status line."""

import io
import re

from autoresearch.display import Display


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_line_redraws_with_the_phase_and_its_allowance():
    out = Terminal()
    with Display(out) as display:
        display.set_status(
            "experiment 3: measuring | best 0.99 | last: keep 0.99", lambda: "training 5s/300s"
        )
        display.say("[  2] keep ...")
    text = out.getvalue()
    assert (
        "\r\x1b[K" in text
        and "experiment 3: measuring | best 0.99 | last: keep 0.99 [training 5s/300s]" in text
    )
    assert "[  2] keep ...\n" in text


def test_plain_lines_without_a_terminal():
    out = io.StringIO()
    with Display(out) as display:
        display.set_status("experiment 1")
        display.say("[  1] discard")
    assert out.getvalue() == "[  1] discard\n"


def test_live_line_shows_the_measurement_eta():
    out = Terminal()
    with Display(out) as display:
        display.set_status("experiment 3: measuring | 12.0 exp/h", lambda: "start-up 0s/75s", expected=65)
    assert "experiment 3: measuring | 12.0 exp/h [start-up 0s/75s, eta 65s]" in out.getvalue()


def test_a_run_shows_its_pace_and_the_measurement_eta(toy):
    from autoresearch import registry
    from autoresearch.config import load_target
    from autoresearch.engine import Engine, RunOptions
    from autoresearch.history import History
    from autoresearch.workspace import Workspace

    out = Terminal()
    options = RunOptions(tag="t", max_experiments=3, accept="strict", baseline_runs=1)
    history = History(toy / ".autoresearch" / "history.db")
    agent = registry.agents()["mutate"]()
    with Display(out) as display:
        Engine(Workspace(toy), load_target(toy), agent, history, options, display).run()
    text = out.getvalue()
    assert re.search(
        r"experiment 3: measuring \| best [\d.]+ \| last: \w+ [\d.]+ \| [\d,.]+ exp/h "
        r"\[(start-up \d+s/75s, )?eta \d+s\]",
        text,
    )
