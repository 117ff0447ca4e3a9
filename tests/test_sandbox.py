"""The sandbox of every evaluator command: what it may write, see and reach, and its weaker mode."""

import socket
import sys

import pytest

from autoresearch import sandbox
from autoresearch.measure import Runner
from autoresearch.sandbox import Sandbox

from conftest import invoke

needs_bwrap = pytest.mark.skipif(sandbox.bwrap_problem() is not None, reason="needs bubblewrap")


def run(tmp_path, code, box):
    return Runner().run([sys.executable, "-c", code], tmp_path, tmp_path / "log", 30, sandbox=box)


@needs_bwrap
def test_only_the_writable_folders_can_be_written(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir(), home.mkdir()
    box = Sandbox(writable=(work,))
    assert run(work, "open('out.txt', 'w').write('ok')", box).status == "ok"
    outside = run(work, f"open({str(home / 'x')!r}, 'w')", box)
    assert outside.status == "crash" and "Read-only file system" in outside.reason
    assert (work / "out.txt").exists() and not (home / "x").exists()


@needs_bwrap
def test_secret_paths_are_empty_inside(tmp_path):
    secret = tmp_path / "val"
    secret.mkdir()
    (secret / "rows.txt").write_text("the answers")
    hidden = Sandbox(writable=(tmp_path,), hidden=(secret,))
    listing = run(tmp_path, f"import os; print(os.listdir({str(secret)!r}))", hidden)
    assert listing.output().strip() == "[]"
    shown = run(tmp_path, f"import os; print(os.listdir({str(secret)!r}))", Sandbox(writable=(tmp_path,)))
    assert shown.output().strip() == "['rows.txt']"
    assert (secret / "rows.txt").read_text() == "the answers"


@needs_bwrap
def test_network_is_off_unless_the_target_needs_it(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    connect = f"import socket; socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), 2)"
    try:
        assert run(tmp_path, connect, Sandbox(writable=(tmp_path,), network=True)).status == "ok"
        cut = run(tmp_path, connect, Sandbox(writable=(tmp_path,)))
        # a fresh network namespace: the host's listening socket is not there
        assert cut.status == "crash" and "Connection refused" in cut.reason
    finally:
        server.close()


def test_without_bubblewrap_every_run_warns_and_no_network_refuses(toy, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed; install it")
    outside = tmp_path / "written-outside"
    unsandboxed = Runner().run(["touch", str(outside)], tmp_path, tmp_path / "log", 10, sandbox=Sandbox(()))
    assert unsandboxed.status == "ok" and outside.exists()  # the weaker mode really is weaker
    for _ in range(2):
        result = invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
        assert result.exit_code == 0, result.output
        warning = "warning: evaluators run WITHOUT a sandbox: bubblewrap (bwrap) is not installed"
        assert warning in result.output
    refused = invoke("run", "--agent", "mutate", "--tag", "t", "--no-network")
    assert refused.exit_code != 0 and "--no-network needs the sandbox" in refused.output
