"""A live, read-only dashboard: an HTTP server that pushes ledger changes as server-sent events.

One watcher thread asks SQLite whether the ledger changed (``PRAGMA data_version``) a few times a
second; only then does it read the rows written since the last one it saw, the run and the
``pending`` row. It also follows the in-flight experiment's log as it grows. What changed goes to
every open page as one event; a page that connects first gets a snapshot. Nothing here writes.
"""

from __future__ import annotations

import json
import queue
import re
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from ..history import History
from ..measure import log_tail
from . import chart
from .html import STYLE, cards
from .run import RunView, workspace_of

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15
LOG_LINES = 40
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
PHASE_LINE = re.compile(rb"^phase:\s*(\S+)", re.M)
ROW_KEYS = (
    "number", "status", "reason", "metric", "description", "agent", "model",
    "commit", "measure_seconds", "cost_usd", "finished_at",
)  # fmt: skip
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")


class LogFollower:
    """The in-flight experiment's log: its tail, and the evaluator's last ``phase:`` line."""

    def __init__(self, path: Path):
        self.path, self.size, self.phase = path, 0, None

    def grew(self) -> bool:
        """Read what was appended since the last call; True when the log changed."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return False
        if size == self.size:
            return False
        with open(self.path, "rb") as f:
            f.seek(self.size if size > self.size else 0)
            phases = PHASE_LINE.findall(f.read())
        self.size = size
        if phases:
            self.phase = phases[-1].decode(errors="replace")
        return True

    def state(self) -> dict:
        return {"evaluator_phase": self.phase, "log": log_tail(self.path, LOG_LINES)}


class Feed:
    """The run as the dashboard has seen it; ``poll`` reads only what changed and tells the pages."""

    def __init__(self, ledger: Path, tag: str | None, metric: str, direction: str):
        self.ledger, self.pinned, self.metric, self.direction = ledger, tag, metric, direction
        self.history: History | None = None  # opened by the watcher thread, used only there
        self.version: int | None = None
        self.view: RunView | None = None
        self.last_id = 0
        self.pending: dict | None = None
        self.log: LogFollower | None = None
        self.listeners: list[queue.Queue] = []
        self.lock = threading.Lock()

    # ---- the watcher thread

    def poll(self) -> None:
        if self.history is None:
            self.history = History.reader(self.ledger)
        with self.lock:  # pages subscribe in other threads: they see a state and every change after it
            event: dict = {}
            version = self.history.data_version()
            if version != self.version:
                self.version = version
                event = self._ledger_changes()
            if self.log and self.log.grew():
                event |= self.log.state()
            if event:
                self._broadcast("update", event)

    def _ledger_changes(self) -> dict:
        run = self.history.run(self.pinned) if self.pinned else self.history.latest_run()
        if run is None:
            return {}
        if self.view is None or self.view.run["tag"] != run["tag"]:
            self._start(run)
            return {}
        event: dict = {}
        self.view.run = run
        rows = self._read_rows()
        if rows:
            event |= {"rows": [public(row) for row in rows], "chart": self._chart()}
        if self._read_pending():
            event |= {"pending": self._pending_state()}
            if self.log:
                event |= self.log.state()
        if event:
            event["kpis"] = cards(self.view.kpis())
        return event

    def _start(self, run: dict) -> None:
        """A (new) run to show: read it whole once; every page starts again from a snapshot."""
        metric, direction = run.get("metric") or self.metric, run.get("direction") or self.direction
        self.view = RunView(run, metric, direction, root=workspace_of(self.ledger))
        self.last_id, self.pending, self.log = 0, None, None
        self._read_rows()
        self._read_pending()
        self._broadcast("snapshot", self.snapshot())

    def _read_rows(self) -> list[dict]:
        rows = self.history.experiments(self.view.run["tag"], after_id=self.last_id)
        if rows:
            self.view.add(rows)
            self.last_id = max(row["id"] for row in rows)
        return rows

    def _read_pending(self) -> bool:
        """Read the pending row; True when it changed."""
        pending = self.history.pending_row(self.view.run["tag"])
        if pending == self.pending:
            return False
        self.pending = pending
        if pending is None:
            self.log = None
        elif self.log is None or self.log.path != self._log_path(pending):
            self.log = LogFollower(self._log_path(pending))
            self.log.grew()
        return True

    def _log_path(self, pending: dict) -> Path:
        """Where the engine writes the experiment's log: ``.autoresearch/logs/<tag>/<number>.log``."""
        return self.ledger.parent / "logs" / pending["run"] / f"{pending['number']}.log"

    def _pending_state(self) -> dict | None:
        if self.pending is None:
            return None
        updated = datetime.fromisoformat(self.pending["updated_at"])
        return {
            "number": self.pending["number"],
            "phase": self.pending["phase"],
            "elapsed": (datetime.now(timezone.utc) - updated).total_seconds(),
            "budget": (self.view.run["options"] or {}).get("budget"),
        }

    def _chart(self) -> str:
        return chart.svg(chart.build(self.view))

    def _broadcast(self, kind: str, event: dict) -> None:
        for listener in self.listeners:
            listener.put((kind, event))

    # ---- the pages

    def snapshot(self) -> dict:
        """Everything a page shows (call with the lock held)."""
        if self.view is None:
            return {"run": None}
        return {
            "run": {key: self.view.run[key] for key in ("tag", "target", "agent", "started_at", "ended_at")},
            "metric": self.view.metric,
            "direction": self.view.direction,
            "rows": [public(row) for row in self.view.rows],
            "kpis": cards(self.view.kpis()),
            "chart": self._chart(),
            "pending": self._pending_state(),
            **(self.log.state() if self.log else {}),
        }

    def subscribe(self) -> queue.Queue:
        listener: queue.Queue = queue.Queue()
        with self.lock:
            listener.put(("snapshot", self.snapshot()))
            self.listeners.append(listener)
        return listener

    def unsubscribe(self, listener: queue.Queue) -> None:
        with self.lock:
            self.listeners.remove(listener)

    def experiment(self, number: int) -> dict | None:
        with self.lock:
            rows = [row for row in (self.view.rows if self.view else []) if row["number"] == number]
        if not rows:
            return None
        row = rows[0]
        return public(row) | {"diff": row["diff"], "log": log_tail(self.view.log_file(row), LOG_LINES)}


def public(row: dict) -> dict:
    return {key: row.get(key) for key in ROW_KEYS}


class Handler(BaseHTTPRequestHandler):
    """GET only: the page, its script, the event stream and one experiment's details."""

    feed: Feed
    stopping: threading.Event
    local: bool

    def log_message(self, format, *args) -> None:  # quiet: the terminal shows the URL only
        pass

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if self.local and not is_local(host):  # a page of another site reaching us by DNS rebinding
            return self._send(403, "text/plain", b"forbidden")
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(200, "text/html; charset=utf-8", static("dashboard.html"))
        if path == "/dashboard.js":
            return self._send(200, "text/javascript; charset=utf-8", static("dashboard.js"))
        if path == "/style.css":
            return self._send(200, "text/css; charset=utf-8", STYLE.encode())
        if path == "/events":
            return self._events()
        match = re.fullmatch(r"/experiment/(\d+)", path)
        if match:
            found = self.feed.experiment(int(match.group(1)))
            if found is not None:
                return self._send(200, "application/json", json.dumps(found).encode())
        self._send(404, "text/plain", b"not found")

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        listener = self.feed.subscribe()
        try:
            while not self.stopping.is_set():
                try:
                    kind, event = listener.get(timeout=KEEPALIVE_SECONDS)
                    message = f"event: {kind}\ndata: {json.dumps(event)}\n\n"
                except queue.Empty:
                    message = ": keep-alive\n\n"
                self.wfile.write(message.encode())
                self.wfile.flush()
        except OSError:  # the page went away
            pass
        finally:
            self.feed.unsubscribe(listener)


def static(name: str) -> bytes:
    return resources.files("autoresearch.views").joinpath("static", name).read_bytes()


class Dashboard:
    """The server and its watcher thread; ``start`` returns at once, ``stop`` ends both."""

    def __init__(self, feed: Feed, host: str = "127.0.0.1", port: int = 0):
        self.feed = feed
        self.stopping = threading.Event()
        self.ready = threading.Event()  # the watcher has read the ledger once
        handler = type(
            "BoundHandler", (Handler,), {"feed": feed, "stopping": self.stopping, "local": is_local(host)}
        )
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.threads = [
            threading.Thread(target=self._watch, daemon=True),
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True),
        ]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def _watch(self) -> None:
        while not self.stopping.is_set():
            try:
                self.feed.poll()
            except sqlite3.Error as error:  # e.g. locked for longer than the busy timeout: try again
                print(f"dashboard: reading the ledger failed ({error}); retrying", file=sys.stderr)
            self.ready.set()
            time.sleep(POLL_SECONDS)

    def start(self) -> Dashboard:
        self.threads[0].start()
        self.ready.wait(timeout=60)  # the first read happens before the first page can ask
        self.threads[1].start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
