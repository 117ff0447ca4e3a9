"""The Ray executor (``run --executor ray``): each measurement a Ray task on a cluster node.

The driver (this process) stays the one writer of git and the ledger. For each measurement it
submits ``node.measure`` as a streaming task (one GPU for a target that needs one, else one
CPU) and polls it: the log bytes the task yields are appended to the experiment's log here as
they come (so the live display and ``autoresearch log`` follow it), the last item is the result.
The commit travels as a git bundle that the node pulls from a small actor on the driver's node
(``BundleServer``, a reader of the workspace's repository), telling it which commits it has:
the bundle carries only what the node lacks. The poll is what makes Ctrl-C land: it cancels
the task, whose node stops the evaluator. A task lost with its worker or node is run again
once, then recorded ``crash`` with the reason.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from contextlib import suppress
from pathlib import Path

from ..checkout import Checkouts
from ..config import read_config
from ..measure import Runner, Usage
from ..protocol import PhaseClock
from ..target import ConfigError, Measurement, Target
from . import Executor, Job, bundle, node

INSTALL = "pip install 'autoresearch[ray]'"
POLL_SECONDS = 0.2
CANCEL_GRACE_SECONDS = 10.0  # how long a cancelled task may take to stop its evaluator
CONNECT_SECONDS = 5.0


def import_ray():
    """The ``ray`` module, or the one line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class BundleServer:
    """Makes bundles of the workspace's commits for nodes (a Ray actor on the driver's node)."""

    def __init__(self, git_dir: str):
        self.git_dir = git_dir

    def bundle(self, commit: str, haves: list[str]) -> bytes:
        return bundle.create(self.git_dir, commit, haves)


def _task(request: node.Request, server):
    """The Ray task: ``node.measure``, pulling the bundle from the driver's ``server``."""
    import ray

    _cancellable()
    yield from node.measure(request, lambda haves: ray.get(server.bundle.remote(request.job.commit, haves)))


def _cancellable() -> None:
    """Let Ray's cancel interrupt this task. It raises KeyboardInterrupt in the worker's main
    thread as a SIGINT would, which does nothing where SIGINT is ignored: workers inherit that
    from whatever started Ray in the background (a shell's ``&``, nohup), and the task would run on."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Lost(Exception):
    """The task was lost with its worker or node (not a failure of the evaluator)."""


class RayExecutor(Executor):
    name = "ray"

    def __init__(
        self,
        target: Target,
        runner: Runner,
        checkouts: Checkouts,
        address: str | None = None,
        memory_limit_mb: float | None = None,
        log_limit_mb: float | None = None,
        **_,
    ):
        ray = self.ray = import_ray()
        self.started = _connect(ray, address)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.runner = runner
        self.config = read_config(checkouts.ws.root)
        self.target = target
        self.limits = {"memory_limit_mb": memory_limit_mb, "log_limit_mb": log_limit_mb}
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.server = (
            ray.remote(num_cpus=0)(BundleServer)
            .options(scheduling_strategy=here)
            .remote(checkouts.ws.repo.git_dir)
        )
        gpus = 1 if target.gpu else 0
        if gpus and not ray.cluster_resources().get("GPU"):
            raise ConfigError(
                f"target {target.name} needs a GPU for each measurement, but the Ray cluster has none; "
                "start its nodes on GPU machines (or, for nanochat_bpb, set device: cpu)"
            )
        # max_calls=0: a worker may run task after task. Ray starts a fresh worker for every GPU
        # task by default, to free the GPU memory it holds; ours holds none (the evaluator is a
        # subprocess), and a fresh worker costs a second or more per measurement.
        task = ray.remote(num_returns="streaming", max_retries=0, max_calls=0)(_task)
        self.task = task.options(num_gpus=gpus, num_cpus=0 if gpus else 1)
        self.where = threading.local()
        self.shipped: list[tuple[str, str, int]] = []  # (commit, how, bytes) per measurement

    def host(self) -> str | None:
        return getattr(self.where, "host", None)

    def close(self) -> None:
        self.ray.kill(self.server)
        if self.started:
            self.ray.shutdown()

    def measure(self, job: Job) -> tuple[Measurement, Usage]:
        request = node.Request(job, self.target.name, self.config, **self.limits)
        try:
            return self._attempt(request)
        except Lost as lost:
            _note(job.log_path, f"ray: the task was lost ({lost}); running it again")
        try:
            return self._attempt(request)
        except Lost as lost:
            return Measurement("crash", reason=f"the Ray task was lost twice: {lost}"), Usage()

    def _attempt(self, request: node.Request) -> tuple[Measurement, Usage]:
        """One task, its log appended to the experiment's as it comes; raises ``Lost``."""
        job = request.job
        started = time.monotonic()
        stream = self.task.remote(request, self.server)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The live line's phase clock, fed from the streamed log (no command runs here).
        clock = self.runner.clocks[threading.get_ident()] = PhaseClock(
            self.target.allowances(job.budget), started
        )
        try:
            with open(job.log_path, "ab") as log:
                result = self._follow(stream, log, clock, started)
        finally:
            del self.runner.clocks[threading.get_ident()]
        if isinstance(result, node.NodeResult):
            if job.watch and result.watch:  # the curve and the verdict, as the node's judge left them
                vars(job.watch).update(vars(result.watch))
            self.where.host = result.host
            self.shipped.append((job.commit, result.shipped, result.bundle_bytes))
            return result.measurement, result.usage
        return result

    def _follow(self, stream, log, clock: PhaseClock, started: float):
        """Poll the task until its result (or a failure's measurement); Ctrl-C cancels it."""
        ray = self.ray
        while True:
            if self.runner.interrupted.is_set():
                return self._cancel(stream, log, started)
            ready, _ = ray.wait([stream], timeout=POLL_SECONDS)
            if not ready:
                continue
            try:
                item = ray.get(next(stream))
            except StopIteration:
                raise Lost("it ended without a result") from None
            except ray.exceptions.TaskCancelledError:
                return _interrupted(started)
            except ray.exceptions.RayTaskError as error:  # the task raised: a crash, not a loss
                reason = f"the Ray task failed: {_first_line(error.cause or error)}"
                return Measurement("crash", reason=reason), Usage(seconds=time.monotonic() - started)
            except ray.exceptions.RayError as error:  # worker or node died, object lost, ...
                raise Lost(_first_line(error)) from None
            if not isinstance(item, bytes):
                return item
            log.write(item)
            log.flush()
            clock.feed(item.decode("utf-8", errors="replace"), time.monotonic())

    def _cancel(self, stream, log, started: float) -> tuple[Measurement, Usage]:
        """Ctrl-C: cancel the task; its node stops the evaluator (forced after a grace)."""
        ray = self.ray
        ray.cancel(stream)
        # Wait for the task to end, not on its stream: a cancelled stream reads as ended at once,
        # and reading its end waits for the task, without a timeout.
        ended, _ = ray.wait([stream.completed()], timeout=CANCEL_GRACE_SECONDS)
        if not ended:
            ray.cancel(stream, force=True)
            return _interrupted(started)
        with suppress(ray.exceptions.RayError):  # the log's last bytes, read now without waiting
            for item in map(ray.get, stream):
                if isinstance(item, bytes):
                    log.write(item)
        return _interrupted(started)


def _interrupted(started: float) -> tuple[Measurement, Usage]:
    return Measurement("interrupted", reason="stopped by the user"), Usage(seconds=time.monotonic() - started)


def _note(log_path: Path, line: str) -> None:
    with open(log_path, "a") as log:
        log.write(line + "\n")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1][:300] if text else type(error).__name__


def _connect(ray, address: str | None) -> bool:
    """Connect to the cluster at ``address`` (None: a local Ray on this machine, or RAY_ADDRESS's
    cluster); True when this call started Ray, so ``close`` stops it. A Ray already started in
    this process (a test, a notebook) is used as it is."""
    if address and address not in ("auto", "local") and "://" not in address:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or address, int(port or 6379)), CONNECT_SECONDS).close()
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"--ray-address {address}: no Ray cluster answers there ({error}); start one with "
                "'ray start --head' on that machine, or give its address (host:6379, or auto)"
            ) from None
    if ray.is_initialized():
        return False
    options = {"address": address, "log_to_driver": False}
    if address is None:
        options["include_dashboard"] = False
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ConfigError(
            f"--ray-address {address}: cannot connect to a Ray cluster ({_first_line(error)}); "
            "start one with 'ray start --head', or give its address (host:6379, or auto)"
        ) from None
    return True
