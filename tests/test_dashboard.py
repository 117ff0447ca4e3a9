"""The dashboard's server and feed without a browser: only new rows are sent, and nothing is writable."""

import json
import queue
import sqlite3
import urllib.error
import urllib.request

import pytest

from autoresearch.history import History, Pending
from autoresearch.views.dashboard import Dashboard, Feed

from conftest import invoke


def ledger_with_a_run(path) -> History:
    history = History(path)
    history.create_run("a", "command", "mutate", {"budget": 10}, {}, "loss", "lower")
    history.record({"run": "a", "number": 0, "status": "baseline", "metric": 2.0, "description": "base"})
    return history


def test_feed_sends_a_snapshot_then_only_what_changed(tmp_path):
    history = ledger_with_a_run(tmp_path / "h.db")
    feed = Feed(history.path, None, "loss", "lower")
    feed.poll()
    pages = feed.subscribe()
    kind, snapshot = pages.get_nowait()
    assert kind == "snapshot" and [row["number"] for row in snapshot["rows"]] == [0]
    feed.poll()
    assert pages.empty()  # no commit, no event
    history.set_pending("a", Pending(1, "measure", parent="x"))
    feed.poll()
    kind, event = pages.get_nowait()
    assert kind == "update" and event["pending"]["number"] == 1 and "rows" not in event
    history.record({"run": "a", "number": 1, "status": "keep", "metric": 1.0, "description": "<b>x</b>"})
    feed.poll()
    kind, event = pages.get_nowait()
    assert [row["number"] for row in event["rows"]] == [1]  # the new row only
    assert (
        event["pending"] is None and "&lt;b&gt;x&lt;/b&gt;" in event["chart"] and "<b>" not in event["chart"]
    )
    history.create_run(
        "b", "command", "mutate", {}, {}, "loss", "lower"
    )  # a newer run: pages start again from it
    history.db["runs"].update("b", {"started_at": "9999"})
    feed.poll()
    kind, snapshot = pages.get(timeout=5)
    assert kind == "snapshot" and snapshot["run"]["tag"] == "b" and snapshot["rows"] == []
    with pytest.raises(queue.Empty):
        pages.get_nowait()


def test_server_is_read_only_and_local(tmp_path):
    history = ledger_with_a_run(tmp_path / "h.db")
    files = [history.path, history.path.with_name("h.db-wal")]
    before = [path.read_bytes() for path in files]
    server = Dashboard(Feed(history.path, "a", "loss", "lower")).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(server.url).read().decode()
        assert '<script src="dashboard.js"' in page
        assert json.load(urllib.request.urlopen(server.url + "experiment/0"))["description"] == "base"
        for request, code in [
            (urllib.request.Request(server.url, method="POST", data=b"x"), 501),
            (urllib.request.Request(server.url + "experiment/9"), 404),
            (urllib.request.Request(server.url, headers={"Host": "attacker.example"}), 403),
        ]:
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(request)
            assert error.value.code == code
    finally:
        server.stop()
    assert [path.read_bytes() for path in files] == before


def test_a_non_local_host_must_be_given_explicitly(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t", "--accept", "strict")
    result = invoke("dashboard", default_map={"dashboard": {"host": "0.0.0.0"}})
    assert result.exit_code == 1
    assert "0.0.0.0 is not a local address; give --host 0.0.0.0" in result.output


class FlakyFeed(Feed):
    """The ledger is locked for the first reads (a checkpoint, a long write)."""

    failures = 2

    def poll(self) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        super().poll()


def test_a_failed_read_does_not_stop_the_dashboard(tmp_path, capfd):
    history = ledger_with_a_run(tmp_path / "h.db")
    server = Dashboard(FlakyFeed(history.path, "a", "loss", "lower")).start()
    try:
        pages = server.feed.subscribe()
        history.record({"run": "a", "number": 1, "status": "discard", "metric": 3.0, "description": "d"})
        seen = []
        while 1 not in seen:
            kind, event = pages.get(timeout=30)
            seen += [row["number"] for row in event.get("rows", [])]
    finally:
        server.stop()
    assert "reading the ledger failed (database is locked); retrying" in capfd.readouterr().err
