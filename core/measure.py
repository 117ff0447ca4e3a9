"""Running an evaluator command under a budget, and reading its summary block."""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .processes import TreeUsage, die_with_parent, kill_group, tree_rss_bytes
from .protocol import Allowances, PhaseClock
from .sandbox import Sandbox, available
from .target import Measurement

Progress = Callable[[dict[str, float]], "str | None"]  # a progress line's values -> a reason to stop

SECRET_ENV = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
SUMMARY_LINE = re.compile(r"^([A-Za-z_][\w.\-]*):\s+(\S.*?)\s*$")
INTEGER = re.compile(r"[+-]?[0-9]+")
FLOAT = re.compile(
    r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE
)
POLL_SECONDS = 0.05
LOG_FULL = "log file size limit reached (disk full?)"


class SummaryError(ValueError):
    """The evaluator's output breaks the summary contract (missing, duplicated or bad metric)."""


@dataclass
class RunResult:
    """How one evaluator process ended. ``status``: ok, crash, timeout, interrupted, aborted.

    ``aborted``: the ``on_progress`` callback asked to stop it (early abort).
    """

    status: str
    exit_code: int | None  # negative: killed by that signal
    seconds: float  # wall-clock, measured by the harness
    log_path: Path
    reason: str | None = None
    span: tuple[int, int] = (0, 0)  # where this command's output lies in the (shared) log
    cpu_seconds: float = 0.0  # user + system time of the whole process tree, measured by the harness
    peak_memory_bytes: int = 0  # largest resident memory of the process tree seen

    def output(self) -> str:
        """Everything this command wrote (other runs in the same log excluded)."""
        with open(self.log_path, "rb") as log:
            log.seek(self.span[0])
            return log.read(self.span[1] - self.span[0]).decode("utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def last_line(self) -> str:
        """The last non-blank line this command printed."""
        with open(self.log_path, "rb") as log:
            log.seek(max(self.span[0], self.span[1] - 4096))
            lines = log.read(self.span[1] - log.tell()).decode("utf-8", errors="replace").splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")


def log_tail(path: Path | str | None, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of a log file, reading at most ``max_bytes`` from its end."""
    if not path or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def parse_summary(text: str) -> dict[str, list[str]]:
    """Every ``key: value`` line after a ``---`` line, as key -> all values seen (in order)."""
    values: dict[str, list[str]] = {}
    in_block = False
    for line in text.splitlines():
        if line.strip() == "---":
            in_block = True
            continue
        match = SUMMARY_LINE.match(line) if in_block else None
        if match:
            values.setdefault(match.group(1), []).append(match.group(2))
    return values


def to_number(value: str):
    """A summary value as int or float where it is written as one, else the string.

    Stricter than ``int()``/``float()``: ``1_000`` or non-ASCII digits stay strings.
    """
    if INTEGER.fullmatch(value):
        return int(value)
    if FLOAT.fullmatch(value):
        return float(value)
    return value


def read_metric(text: str, metric: str) -> tuple[float, dict]:
    """The metric and the other keys from an evaluator's output; raises ``SummaryError``."""
    values = parse_summary(text)
    found = values.pop(metric, [])
    if not found:
        raise SummaryError(f"no '{metric}:' line after a '---' line in the output")
    if len(found) > 1:
        raise SummaryError(f"metric '{metric}' printed {len(found)} times")
    number = to_number(found[0])
    if not isinstance(number, (int, float)) or not math.isfinite(number):
        raise SummaryError(f"metric '{metric}' is not a finite number: {found[0]!r}")
    extras = {key: to_number(vals[-1]) for key, vals in values.items()}
    return float(number), extras


def measurement(result: RunResult, metric: str) -> Measurement:
    """The Measurement of an evaluator run: its failure, or the metric read from its summary."""
    ended = {"seconds": result.seconds, "exit_code": result.exit_code}
    if result.status != "ok":
        return Measurement(result.status, reason=result.reason, **ended)
    try:
        value, extras = read_metric(result.output(), metric)
    except SummaryError as error:
        return Measurement("crash", reason=str(error), **ended)
    return Measurement("ok", value, extras, **ended)


def clean_env(passthrough: list[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The harness's environment without secrets, except those the target declares it needs."""
    env = {k: v for k, v in os.environ.items() if k in passthrough or not SECRET_ENV.search(k)}
    env.update(extra or {})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Usage:
    """What the harness measured of one evaluation's commands together."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0

    def add(self, result: RunResult) -> None:
        self.seconds += result.seconds
        self.cpu_seconds += result.cpu_seconds
        self.peak_memory_bytes = max(self.peak_memory_bytes, result.peak_memory_bytes)


@dataclass
class Evaluation:
    """One measurement of one commit, as a target's ``evaluate`` gets it.

    ``root`` is a fresh checkout of exactly the commit's tracked files, read-only to the
    commands: code the agent wrote (a training phase) cannot change or add to what a later
    command runs (the evaluation phase). ``scratch`` is a folder shared by the evaluation's
    commands and the only place they can write (build outputs, checkpoints, caches); each command
    gets an empty ``$TMPDIR`` in it. Both are removed afterwards. ``run`` runs a command in the
    checkout under the runner, inside the sandbox, with the target's per-phase allowances as its
    default deadline.
    """

    root: Path
    scratch: Path
    budget: float
    seed: int | None
    log_path: Path
    runner: Runner
    allowances: Allowances | None = None  # the default deadline (else the budget alone)
    secrets: tuple[Path, ...] = ()  # hidden from every command not run with secrets=True
    network: bool = False
    usage: Usage = field(default_factory=Usage)
    env: dict[str, str] = field(default_factory=dict)  # the slot's: its device, its share of the cores
    on_progress: Progress | None = None  # sees every progress line; may stop the command (early abort)

    @classmethod
    def of(
        cls,
        target,
        root: Path,
        scratch: Path,
        budget: float,
        seed: int | None,
        log_path: Path,
        runner: Runner,
        network: bool,
        **extra,
    ) -> Evaluation:
        """The evaluation of ``target`` on ``root``, with the allowances and secrets it declares."""
        return cls(
            root=root,
            scratch=scratch,
            budget=budget,
            seed=seed,
            log_path=log_path,
            runner=runner,
            allowances=target.allowances(budget),
            secrets=tuple(target.secret_paths()),
            network=network,
            **extra,
        )

    def run(
        self,
        command: str | list[str],
        *,
        deadline: float | Allowances | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        secrets: bool = False,
    ) -> RunResult:
        """Run ``command`` (a shell string or an argv list) in the checkout; output goes to the log."""
        hidden = () if secrets else self.secrets
        sandbox = Sandbox(writable=(self.scratch,), hidden=hidden, network=self.network)
        tmp = empty_folder(self.scratch / "tmp")  # what an earlier command left there is not this one's
        # caches go to $TMPDIR: the home folder is read-only (Triton's default is ~/.triton/cache)
        places = {"TMPDIR": tmp, "AUTORESEARCH_SCRATCH": self.scratch, "TRITON_CACHE_DIR": tmp / "triton"}
        env = {**{name: str(path) for name, path in places.items()}, **(env or {}), **self.env}
        if deadline is None:
            deadline = self.allowances or self.budget
        result = self.runner.run(
            command, cwd or self.root, self.log_path, deadline, env, sandbox, self.on_progress
        )
        self.usage.add(result)
        return result


def empty_folder(path: Path) -> Path:
    """``path`` as a new empty folder, whatever an evaluator left there (a link is removed, not followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def evaluate_tree(
    target, root: Path, log_path: Path, budget: float | None = None, seed: int | None = None
) -> tuple[Measurement, Usage]:
    """Measure the files in ``root`` as they are, sandboxed (``check``, tests); a run measures
    commits instead, each in a clean checkout (see ``engine.py``)."""
    budget = target.budget if budget is None else budget
    runner = Runner(env_passthrough=target.env_passthrough)
    with tempfile.TemporaryDirectory(prefix="autoresearch-scratch-") as scratch_dir:
        root, scratch = Path(root), Path(scratch_dir)
        evaluation = Evaluation.of(target, root, scratch, budget, seed, log_path, runner, target.network)
        measurement = target.evaluate(evaluation)
    measurement.log_path = str(log_path)
    return measurement, evaluation.usage


class Runner:
    """Runs evaluator commands in their own process group under a deadline and limits.

    One Runner serves a whole run: ``interrupt()`` (from a signal handler) stops the command in
    flight, ``on_start`` learns each child's process group so a resumed run can reap orphans.
    """

    def __init__(
        self,
        memory_limit_mb: float | None = None,
        log_limit_mb: float | None = None,
        env_passthrough: list[str] | None = None,
        on_start=None,
    ):
        self.memory_limit = memory_limit_mb * 2**20 if memory_limit_mb else None
        self.log_limit = int(log_limit_mb * 2**20) if log_limit_mb else None
        self.env_passthrough = list(env_passthrough or [])
        self.on_start = on_start
        self.interrupted = threading.Event()
        self.clocks: dict[int, PhaseClock] = {}  # the phase of each command in flight, by thread
        self.exclusive = True  # one command at a time (no slots): the harness's rusage is its CPU

    def interrupt(self) -> None:
        self.interrupted.set()

    def _limits(self):
        if self.log_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.log_limit, self.log_limit))

    def _unsandboxed_limits(self):
        die_with_parent()
        self._limits()

    def run(
        self,
        command: str | list[str],
        cwd: Path,
        log_path: Path,
        deadline: float | Allowances,
        env: dict[str, str] | None = None,
        sandbox: Sandbox | None = None,
        on_progress: Progress | None = None,
    ) -> RunResult:
        """Run ``command`` (a shell string or argv) with output appended to ``log_path``.

        ``deadline``: seconds (one fixed deadline), or per-phase ``Allowances`` that follow the
        command's ``phase:`` lines (see ``protocol``). Wall time, CPU time of the whole process
        tree and its peak memory are measured here, by the harness, whatever the command reports;
        ``sandbox`` confines it (see ``sandbox.py``). ``on_progress`` gets each progress line's
        values; a string it returns stops the command (early abort).
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        sandboxed = sandbox is not None and available()
        if sandboxed:
            argv = sandbox.wrap(argv, Path(cwd))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cpu_before = _children_cpu()
        started = time.monotonic()
        with open(log_path, "ab") as log:
            offset = log.tell()
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(self.env_passthrough, env),
                start_new_session=True,
                preexec_fn=self._limits if sandboxed else self._unsandboxed_limits,
            )
        if self.on_start:
            self.on_start(proc.pid)
        clock = self.clocks[threading.get_ident()] = PhaseClock(deadline, started)
        try:
            with TreeUsage(proc.pid) as usage, open(log_path, "rb") as output:
                output.seek(offset)
                status, reason = self._watch(proc, clock, output, on_progress)
        finally:
            del self.clocks[threading.get_ident()]
            if self.on_start:
                self.on_start(None)
        seconds = time.monotonic() - started
        cpu = usage.cpu_seconds
        if self.exclusive:  # rusage: exact where no sandbox, but it sums every slot's commands
            cpu = max(cpu, _children_cpu() - cpu_before)
        result = RunResult(status, proc.returncode, seconds, log_path, reason, (offset, 0), cpu, usage.peak)
        result.span = (offset, log_path.stat().st_size)
        if status == "ok" and proc.returncode != 0:
            result.status, result.reason = "crash", _exit_reason(proc.returncode, result.last_line())
        if result.status == "crash" and self.log_limit and result.span[1] >= self.log_limit:
            result.reason = LOG_FULL  # Python ignores SIGXFSZ: the write fails and it exits 1
        return result

    @property
    def clock(self) -> PhaseClock | None:
        """The phase of a command in flight (the live display shows one)."""
        return next(iter(list(self.clocks.values())), None)

    def _watch(
        self, proc: subprocess.Popen, clock: PhaseClock, output, on_progress: Progress | None
    ) -> tuple[str, str | None]:
        checked_memory = 0.0
        while proc.poll() is None:
            now = time.monotonic()
            if self.interrupted.is_set():
                return self._stop(proc, "interrupted", "stopped by the user")
            for progress in clock.feed(output.read().decode("utf-8", errors="replace"), now):
                stop = on_progress(progress) if on_progress else None
                if stop:
                    return self._stop(proc, "aborted", stop)
            if now > clock.deadline:
                return self._stop(proc, "timeout", clock.overrun())
            if self.memory_limit and now - checked_memory > 0.5:
                checked_memory = now
                rss = tree_rss_bytes(proc.pid)
                if rss > self.memory_limit:
                    limit_mb = self.memory_limit / 2**20
                    return self._stop(proc, "crash", f"memory {rss / 2**20:.0f} MB > {limit_mb:.0f}")
            time.sleep(POLL_SECONDS)
        kill_group(proc.pid, grace=0)  # children it left behind
        for progress in clock.feed(output.read().decode("utf-8", errors="replace") + "\n", time.monotonic()):
            if on_progress:
                on_progress(progress)  # the curve's last points; too late to stop anything
        return "ok", None

    def _stop(self, proc: subprocess.Popen, status: str, reason: str) -> tuple[str, str]:
        kill_group(proc.pid)
        proc.wait()
        return status, reason


def _children_cpu() -> float:
    """User + system seconds of every waited-for descendant of this process (the harness)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _exit_reason(returncode: int, last_line: str) -> str:
    """How a command ended, and the last line it printed (a traceback's last line says why)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if name == "SIGXFSZ":
            return LOG_FULL
        ended = f"killed by {name}"
    elif returncode - 128 in signal.valid_signals():  # a shell reports its child's signal N as 128+N
        ended = f"killed by {signal.Signals(returncode - 128).name} (exit code {returncode})"
    else:
        ended = f"exit code {returncode}"
    return f"{ended}: {last_line[:200]}" if last_line else ended
