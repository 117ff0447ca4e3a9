"""The terminal side of a run: one live status line on a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


class Display:
    """Prints progress; on a terminal it redraws one status line every second."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.status = ""
        self.clock: Callable[[], str] | None = None  # the measurement's phase, e.g. "training 40s/300s"
        self.started = 0.0  # when the measurement started: for its ETA
        self.expected: float | None = None  # seconds a measurement usually takes: for its ETA
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Display:
        if self.live:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._write("\r\x1b[K")

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._redraw()

    def _line(self) -> str:
        if not self.clock:
            return self.status
        parts = [self.clock()]
        if self.expected:
            parts.append(f"eta {max(self.expected - (time.monotonic() - self.started), 0):.0f}s")
        shown = ", ".join(part for part in parts if part)
        return f"{self.status} [{shown}]" if shown else self.status

    def _redraw(self) -> None:
        self._write("\r\x1b[K" + self._line())

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def set_status(
        self, text: str, clock: Callable[[], str] | None = None, expected: float | None = None
    ) -> None:
        """The live line: experiment, phase, incumbent, last result (+ the evaluator's phase, ETA)."""
        if clock:
            self.started = time.monotonic()
        self.status, self.clock, self.expected = text, clock, expected
        if self.live:
            self._redraw()

    def say(self, text: str) -> None:
        """A permanent line (above the live one on a terminal)."""
        self._write(("\r\x1b[K" + text + "\n" + self._line()) if self.live else text + "\n")
