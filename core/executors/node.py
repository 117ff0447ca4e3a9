"""What a Ray task does on its node (``ray.py`` submits it): one measurement of one commit.

The task gets the commit into the node's cache repository (a bundle from the driver, only when
the node lacks it), extracts exactly its tracked files into a scratch folder, loads the target
from its name and config (plugins are installed on every node), runs the target's one-time
``prepare`` if this node has not yet, and measures the checkout through the same ``evaluate`` as
the local executor. While the evaluator runs, the task yields the new bytes of its log every
``STREAM_SECONDS``; its last item is a ``NodeResult``. Nothing here writes the driver's git or
ledger.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..abort import EarlyAbort
from ..config import target_class
from ..measure import Runner, Usage
from ..target import Measurement, Target
from . import Job, bundle, evaluate
from .bundle import CacheRepo

CACHE_ENV = "AUTORESEARCH_CACHE"  # the data cache's root; the node's Ray folder is ray/ in it
STREAM_SECONDS = 0.5
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Request:
    """What the driver sends with a task: the job, the target to load, the runner's limits."""

    job: Job
    target: str
    config: dict
    memory_limit_mb: float | None = None
    log_limit_mb: float | None = None


@dataclass
class NodeResult:
    measurement: Measurement
    usage: Usage
    host: str
    shipped: str  # how the commit came: "none" (the node had it), "incremental" or "full"
    bundle_bytes: int = 0
    watch: EarlyAbort | None = None  # the job's early-abort judge as the node left it (its curve)


def node_dir() -> Path:
    """This node's Ray folder: its cache repository, prepared markers and scratch checkouts."""
    cache = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "autoresearch"
    return Path(cache) / "ray"


def measure(request: Request, fetch: Callable[[list[str]], bytes]) -> Iterator[bytes | NodeResult]:
    """Measure ``request.job.commit`` here, yielding the log as it grows, then the result.

    ``fetch(haves)`` gets a bundle of the commit from the driver for a node that has ``haves``.
    A cancelled task (Ctrl-C on the driver) is interrupted at a ``yield``; the evaluator is
    stopped and the scratch folder removed before it ends.
    """
    checkouts = node_dir() / "checkouts"
    checkouts.mkdir(parents=True, exist_ok=True)
    _remove_orphans(checkouts)
    base = Path(tempfile.mkdtemp(prefix=f"measure-{os.getpid()}-", dir=checkouts))
    log = base / "log"
    log.touch()
    runner = Runner(request.memory_limit_mb, request.log_limit_mb)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = _measure(request, fetch, base, log, runner)
        except BaseException as error:  # handed to the task's thread, which raises it
            outcome["error"] = error

    worker = threading.Thread(target=work, name="measure", daemon=True)
    try:
        worker.start()
        with open(log, "rb") as output:
            while worker.is_alive():
                worker.join(STREAM_SECONDS)
                yield from _chunks(output)
            yield from _chunks(output)
        if "error" in outcome:
            raise outcome["error"]
        yield outcome["result"]
    finally:
        runner.interrupt()  # a cancelled task: its evaluator stops now
        worker.join()
        shutil.rmtree(base, ignore_errors=True)


def _remove_orphans(checkouts: Path) -> None:
    """Remove the scratch checkouts of tasks whose worker died (killed, or lost with its node)."""
    for folder in checkouts.glob("measure-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a killed worker not yet reaped
    except psutil.NoSuchProcess:
        return False


def _chunks(output) -> Iterator[bytes]:
    while chunk := output.read(CHUNK_BYTES):
        yield chunk


def _measure(request: Request, fetch, base: Path, log: Path, runner: Runner) -> NodeResult:
    job = request.job
    root, scratch = base / "tree", base / "scratch"
    scratch.mkdir(parents=True)  # each command gets an empty $TMPDIR in it (Evaluation.run)
    shipped, size = "none", 0
    with CacheRepo(node_dir() / "repo.git").locked() as repo:
        if not repo.has(job.commit):
            haves = repo.haves()
            data = fetch(haves)
            shipped, size = ("incremental" if bundle.prerequisites(data) else "full"), len(data)
            if not repo.add(data, job.commit):  # its base is gone from this node: all of it
                data = fetch([])
                shipped, size = "full", size + len(data)
                if not repo.add(data, job.commit):
                    raise RuntimeError(f"the bundle of {job.commit[:12]} does not verify on this node")
        repo.extract(job.commit, root)
    host = socket.gethostname()
    note = f"ray: node {host}, worker pid {os.getpid()}, commit {job.commit[:12]} ({shipped}, {size} bytes)"
    _say(log, note)
    target = target_class(request.target).from_config(request.config, root)
    runner.env_passthrough = list(target.env_passthrough)
    _prepare_once(target, request.config, root, lambda line: _say(log, line))
    measurement, usage = evaluate(target, root, scratch, job, log, runner)
    measurement.log_path = None  # the node's log is gone; the driver's has every byte
    return NodeResult(measurement, usage, host, shipped, size, job.watch)


def _say(log: Path, line: str) -> None:
    with open(log, "a") as file:
        file.write(line + "\n")


def _prepare_once(target: Target, config: dict, root: Path, echo) -> None:
    """The target's one-time ``prepare`` on this node: once per node and config, not per task."""
    key = hashlib.sha256(json.dumps([target.name, config], sort_keys=True, default=str).encode())
    marker = node_dir() / "prepared" / f"{target.name}-{key.hexdigest()[:16]}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    with open(marker.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the node's other tasks wait for it
        if marker.exists():
            return
        echo(f"ray: preparing {target.name} on this node (once)")
        target.prepare(root, echo=echo)
        marker.touch()
