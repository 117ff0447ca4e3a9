"""Running evaluators: the summary contract, deadlines, process groups, limits."""

import math
import sys
import time

import pytest

from autoresearch.measure import Runner, SummaryError, clean_env, parse_summary, pid_alive, read_metric


def test_summary_block_is_parsed():
    text = (
        "noise: 1\n---\nval_bpb:          0.997900\ntraining_seconds: 300.1\ndepth:            8\nnote: hi\n"
    )
    metric, extras = read_metric(text, "val_bpb")
    assert metric == 0.9979
    assert extras == {"training_seconds": 300.1, "depth": 8, "note": "hi"}
    assert "noise" not in parse_summary(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("val_bpb: 1.0\n", "no 'val_bpb:' line"),
        ("---\nval_bpb: nan\n", "not a finite number"),
        ("---\nval_bpb: inf\n", "not a finite number"),
        ("---\nval_bpb: fast\n", "not a finite number"),
        ("---\nval_bpb: 1_000\n", "not a finite number"),
        ("---\nval_bpb: \u0661\n", "not a finite number"),  # an Arabic-Indic digit one
        ("---\nval_bpb: 1\n---\nval_bpb: 0.5\n", "printed 2 times"),
    ],
)
def test_bad_metrics_are_errors_never_zero(text, message):
    with pytest.raises(SummaryError, match=message):
        read_metric(text, "val_bpb")


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "p.wait()\n"
    )
    started = time.monotonic()
    result = Runner().run([sys.executable, "-c", script], tmp_path, tmp_path / "log", deadline=1.0)
    assert result.status == "timeout"
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not pid_alive(child)


def test_output_of_each_run_is_separate_in_a_shared_log(tmp_path):
    log = tmp_path / "log"
    first = Runner().run("echo one", tmp_path, log, 10)
    second = Runner().run("echo two", tmp_path, log, 10)
    assert (first.output(), second.output()) == ("one\n", "two\n")
    assert log.read_text() == "one\ntwo\n"


def test_exit_code_and_memory_limit(tmp_path):
    assert Runner().run("exit 3", tmp_path, tmp_path / "log", 10).reason == "exit code 3"
    crashed = Runner().run("sh -c 'kill -SEGV $$'; exit $?", tmp_path, tmp_path / "log", 10)
    assert crashed.reason == "killed by SIGSEGV (exit code 139)"  # the shell's 128+N, named
    hog = [sys.executable, "-c", "x = bytearray(400 * 2**20); import time; time.sleep(30)"]
    result = Runner(memory_limit_mb=100).run(hog, tmp_path, tmp_path / "log", 60)
    assert result.status == "crash" and result.reason.startswith("memory")


def test_log_size_limit_simulates_a_full_disk(tmp_path):
    from autoresearch.measure import LOG_FULL

    spam = [sys.executable, "-c", "import sys\nwhile True: sys.stdout.write('x' * 65536)"]
    result = Runner(log_limit_mb=1).run(spam, tmp_path, tmp_path / "log", 30)
    assert result.status == "crash"
    assert result.reason == LOG_FULL
    assert (tmp_path / "log").stat().st_size <= 2**20


def test_secrets_are_not_passed_on_unless_declared(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("HF_TOKEN", "hf")
    env = clean_env(["HF_TOKEN"])
    assert "ANTHROPIC_API_KEY" not in env and env["HF_TOKEN"] == "hf"


def test_interrupt_stops_the_command(tmp_path):
    runner = Runner()
    runner.interrupt()
    result = runner.run("sleep 30", tmp_path, tmp_path / "log", 60)
    assert result.status == "interrupted"
    assert not math.isnan(result.seconds) and result.seconds < 10


def test_no_network_cuts_even_loopback(tmp_path):
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    probe = [sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"]
    try:
        assert Runner().run(probe, tmp_path, tmp_path / "a.log", 10).status == "ok"
        isolated = Runner(no_network=True).run(probe, tmp_path, tmp_path / "b.log", 10)
        assert isolated.status == "crash" and "unreachable" in (tmp_path / "b.log").read_text().lower()
    finally:
        server.close()


def test_no_network_without_unshare_says_so(monkeypatch):
    from autoresearch import measure

    monkeypatch.setattr(measure.shutil, "which", lambda name: None)
    with pytest.raises(OSError, match="--no-network needs the 'unshare' command"):
        Runner(no_network=True)
