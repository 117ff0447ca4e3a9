"""The Ray executor (issue 11): measurements as Ray tasks on a local cluster with 2 fake GPUs.

One Ray instance serves the whole session (starting one takes seconds), with its auth, dashboard
and usage stats off; its workers keep their node folder (cache repository, prepared markers,
scratch checkouts) in a folder of the session.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from test_early_abort import CURVED_EVALUATE

from autoresearch.checkout import Checkouts
from autoresearch.config import load_target
from autoresearch.executors import Job, make_executor
from autoresearch.executors import ray as ray_executor
from autoresearch.history import History
from autoresearch.measure import Runner
from autoresearch.workspace import Workspace

from conftest import EVALUATE, MODEL, command_workspace, configure, git, invoke, wait_until

ray = pytest.importorskip("ray")

HOLDING = """\
import os, time
print("started", flush=True)
while os.path.exists(os.environ["HOLD"]):
    time.sleep(0.05)
print("---")
print("loss: 1.0")
"""


@pytest.fixture(scope="session")
def node_dir(tmp_path_factory):
    """A local Ray cluster (2 CPUs, 2 fake GPUs) for the session; its node folder."""
    folder = tmp_path_factory.mktemp("ray-node")
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    # The node's processes keep the environment Ray starts with (every job's workers do).
    saved = {key: os.environ.get(key) for key in ("AUTORESEARCH_CACHE", "HOME")}
    os.environ.update(AUTORESEARCH_CACHE=str(folder), HOME=str(folder))
    # Started as from a background job (a shell's &, nohup): SIGINT ignored, which its workers
    # inherit, and Ray's cancel (a KeyboardInterrupt in the task) must land all the same.
    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ray.init(
            num_cpus=2,
            num_gpus=2,
            include_dashboard=False,
            object_store_memory=200 * 2**20,
            log_to_driver=False,
        )
    finally:
        signal.signal(signal.SIGINT, sigint)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield folder / "ray"
    ray.shutdown()


def gpu_workspace(root: Path, evaluate: str) -> Path:
    """A command workspace whose target asks for a GPU per measurement (``gpu: true``), with a
    file of its own so that its commits are new to the session's node."""
    command_workspace(root, evaluate, budget=60, **{"unique.txt": str(root)})
    config = yaml.safe_load((root / "autoresearch.yaml").read_text())
    (root / "autoresearch.yaml").write_text(yaml.safe_dump(config | {"gpu": True}))
    git(root, "commit", "-qam", "gpu: true")
    return root


def executor(root: Path, runner: Runner | None = None):
    return make_executor(
        "ray",
        None,
        None,
        target=load_target(root),
        runner=runner or Runner(),
        checkouts=Checkouts(Workspace(root)),
    )


def commit_change(root: Path, old: str, new: str) -> str:
    path = root / "model.py"
    path.write_text(path.read_text().replace(old, new))
    git(root, "commit", "-qam", f"{old} -> {new}")
    return git(root, "rev-parse", "HEAD")


def job(root: Path, commit: str, log: Path, **env: str) -> Job:
    return Job(commit, log, budget=60, seed=None, network=False, env=env)


def test_a_mutate_run_through_ray_keeps_an_improvement(node_dir, tmp_path, monkeypatch):
    root = gpu_workspace(tmp_path / "ws", EVALUATE)
    monkeypatch.chdir(root)
    args = ["--executor", "ray", "--slots", "2", "--max-experiments", "6", "--accept", "strict"]
    result = invoke("run", "--agent", "mutate", "--tag", "t", *args)
    assert result.exit_code == 0, result.output
    rows = History(root / ".autoresearch" / "history.db").experiments("t")
    assert [r["number"] for r in rows] == list(range(7))
    assert any(r["status"] == "keep" for r in rows), [(r["status"], r["metric"]) for r in rows]
    assert {r["slot"] for r in rows[1:]} <= {0, 1} and all(r["host"] for r in rows)
    logs = [(root / r["log_path"]).read_text() for r in rows[1:] if r["log_path"]]
    assert logs and all(re.search(r"^ray: node .*, worker pid \d+", log, re.M) for log in logs)
    assert all("loss:" in log for log in logs)  # the evaluator's output, streamed back
    assert (
        git(root, "rev-parse", "autoresearch/t")
        == History(root / ".autoresearch" / "history.db").incumbent("t")["commit"]
    )
    assert git(root, "status", "--porcelain") == ""  # the user's checkout was never touched


def test_the_second_bundle_to_a_node_is_incremental(node_dir, tmp_path):
    root = gpu_workspace(tmp_path / "ws", EVALUATE)
    first = git(root, "rev-parse", "HEAD")
    second = commit_change(root, "X = 3.0", "X = 2.0")
    ex = executor(root)
    try:
        for commit in (first, second, first):
            measurement, usage = ex.measure(job(root, commit, tmp_path / "log"))
            assert measurement.status == "ok" and usage.seconds > 0
    finally:
        ex.close()
    (_, how1, size1), (_, how2, size2), (_, how3, size3) = ex.shipped
    assert (how1, how2, how3) == ("full", "incremental", "none")
    assert 0 < size2 < size1 and size3 == 0


def test_prepare_runs_once_per_node(node_dir, tmp_path):
    root = gpu_workspace(tmp_path / "ws", EVALUATE)
    for marker in (node_dir / "prepared").glob("command-*"):
        marker.unlink()  # another test's run prepared this node already
    ex = executor(root)
    head = git(root, "rev-parse", "HEAD")
    logs = [tmp_path / f"{i}.log" for i in range(3)]
    try:
        threads = [threading.Thread(target=ex.measure, args=(job(root, head, log),)) for log in logs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        ex.close()
    preparing = [log for log in logs if "ray: preparing command on this node" in log.read_text()]
    assert len(preparing) == 1


def wait_for(predicate, seconds: float = 60.0):
    return wait_until(predicate, seconds, "the cluster")


def start_measuring(ex, root: Path, log: Path, hold: Path) -> tuple[threading.Thread, dict]:
    """Measure the workspace's head in a thread (its evaluator holds while ``hold`` exists)."""
    outcome = {}
    head = git(root, "rev-parse", "HEAD")
    thread = threading.Thread(
        target=lambda: outcome.update(result=ex.measure(job(root, head, log, HOLD=str(hold))))
    )
    thread.start()
    return thread, outcome


def evaluators(hold: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if f"HOLD={hold}" in " ".join(f"{k}={v}" for k, v in (proc.info["environ"] or {}).items()):
                found.append(proc)
        except psutil.Error:
            pass
    return [p for p in found if "python" in " ".join(p.info["cmdline"] or [])]


def running_in(folder: Path) -> list[psutil.Process]:
    """The processes whose working directory is in ``folder`` (evaluators in its checkouts)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if Path(proc.cwd()).is_relative_to(folder):
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.mark.parametrize("kills", [1, 2])
def test_a_lost_task_runs_again_once_then_is_a_crash(node_dir, tmp_path, kills):
    root = gpu_workspace(tmp_path / "ws", HOLDING)
    hold, log = tmp_path / "hold", tmp_path / "log"
    hold.touch()
    ex = executor(root)
    measuring, outcome = start_measuring(ex, root, log, hold)
    try:
        for attempt in range(1, kills + 1):
            wait_for(lambda n=attempt: log.exists() and log.read_text().count("started") == n)
            pids = re.findall(r"worker pid (\d+)", log.read_text())
            assert len(pids) == attempt
            os.kill(int(pids[-1]), signal.SIGKILL)  # the worker dies, as with its node
        if kills == 1:
            wait_for(lambda: log.read_text().count("started") == 2)
            hold.unlink()  # the second attempt may finish
        measuring.join(90)
    finally:
        hold.unlink(missing_ok=True)
        ex.close()
    measurement, _ = outcome["result"]
    assert log.read_text().count("running it again") == 1
    if kills == 1:
        assert measurement.status == "ok" and measurement.metric == 1.0
    else:
        assert measurement.status == "crash" and "lost twice" in measurement.reason
    wait_for(lambda: not evaluators(hold), 30)  # no evaluator outlived its worker
    if kills == 1:  # the retry removed the dead worker's scratch checkout; its own is gone too
        pids = re.findall(r"worker pid (\d+)", log.read_text())
        assert len(pids) == 2
        wait_for(
            lambda: (
                not [f for f in (node_dir / "checkouts").glob("measure-*") if f.name.split("-")[1] in pids]
            )
        )


def test_ctrl_c_cancels_the_task_and_stops_its_evaluator(node_dir, tmp_path):
    root = gpu_workspace(tmp_path / "ws", HOLDING)
    hold, log = tmp_path / "hold", tmp_path / "log"
    hold.touch()
    runner = Runner()
    ex = executor(root, runner)
    measuring, outcome = start_measuring(ex, root, log, hold)
    try:
        wait_for(lambda: log.exists() and "started" in log.read_text())
        assert evaluators(hold)
        stopped = time.monotonic()
        runner.interrupt()  # what the engine's Ctrl-C handler does
        measuring.join(60)
        took = time.monotonic() - stopped
    finally:
        ex.close()
        hold.unlink(missing_ok=True)
    measurement, _ = outcome["result"]
    assert measurement.status == "interrupted"
    assert took < ray_executor.CANCEL_GRACE_SECONDS  # the task itself stopped, not the forced cancel
    wait_for(lambda: not evaluators(hold), 10)
    pid = re.search(r"worker pid (\d+)", log.read_text())[1]
    wait_for(lambda: not list((node_dir / "checkouts").glob(f"measure-{pid}-*")), 10)  # its scratch is gone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "ray", "--devices", "0"], "--devices maps this machine's GPUs"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: no Ray cluster"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    ],
)
def test_bad_executor_input_is_one_line(node_dir, toy, args, message):
    result = invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1", *args)
    assert result.exit_code != 0
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_ray_not_installed_is_one_line(toy, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` fails as without the extra
    result = invoke("run", "--agent", "mutate", "--tag", "t", "--executor", "ray", "--max-experiments", "1")
    assert result.exit_code != 0
    assert result.output.strip().endswith("pip install 'autoresearch[ray]'"), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_ctrl_c_of_a_run_on_a_ray_cluster_stops_its_task(node_dir, tmp_path):
    """The whole run, in its own process, connected by --ray-address to the session's cluster."""
    hold = tmp_path / "hold"
    hold.touch()
    root = gpu_workspace(tmp_path / "ws", HOLDING.replace('os.environ["HOLD"]', repr(str(hold))))
    address = ray.get_runtime_context().gcs_address
    args = ["--executor", "ray", "--ray-address", address, "--accept", "strict"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "run", "--agent", "mutate", "--tag", "t", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = root / ".autoresearch" / "logs" / "t" / "0.log"
    try:
        wait_for(lambda: log.exists() and "started" in log.read_text())  # the baseline, on the cluster
        assert running_in(node_dir / "checkouts")
        assert re.search(r"^ray: node .*, worker pid \d+", log.read_text(), re.M)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        hold.unlink(missing_ok=True)
    assert proc.returncode == 0 and "stopped: interrupted by the user" in output, output
    wait_for(lambda: not running_in(node_dir / "checkouts"), 10)  # its evaluator stopped too
    assert git(root, "rev-parse", "autoresearch/t") == git(root, "rev-parse", "main")


def test_early_abort_judges_on_the_node_and_the_curves_come_back(node_dir, tmp_path, monkeypatch, scripted):
    """The candidate's early-abort judge travels with its task: it stops the evaluator on the
    node at the progress line, and its curve and verdict come back to the driver's ledger."""
    root = command_workspace(tmp_path / "curved", CURVED_EVALUATE, **{"unique.txt": str(tmp_path)})
    monkeypatch.chdir(root)
    configure(root, "seed: true\ncurve: train_loss\n")
    scripted += [
        {"model.py": MODEL.replace("X = 3.0", "X = 9.0"), "_description": "much worse"},
        {"model.py": MODEL.replace("X = 3.0", "X = 1.7"), "_description": "real gain"},
    ]
    result = invoke("run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t", "--executor", "ray")
    assert result.exit_code == 0, result.output
    baseline, worse, better = History(root / ".autoresearch" / "history.db").experiments("t")
    assert [len(curve) for curve in baseline["curves"]["samples"]] == [20, 20, 20]
    assert worse["status"] == "discard" and worse["reason"].startswith("aborted at 20% of the budget")
    assert worse["measure_seconds"] < baseline["measure_seconds"] / 3
    assert better["status"] == "keep" and better["curves"]["samples"][0][-1][0] == 1.0


def test_a_gpu_target_on_a_cluster_without_gpus_is_one_line(node_dir, tmp_path, monkeypatch):
    root = gpu_workspace(tmp_path / "ws", EVALUATE)
    monkeypatch.chdir(root)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})  # a cluster of CPU machines
    result = invoke("run", "--agent", "mutate", "--tag", "t", "--executor", "ray", "--max-experiments", "1")
    assert result.exit_code != 0
    assert "needs a GPU for each measurement, but the Ray cluster has none" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
