"""The live status line."""

import io

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
