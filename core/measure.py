"""Running an evaluator command under a budget, and reading its summary block."""

from __future__ import annotations

import ctypes
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .protocol import Allowances, PhaseClock
from .target import Measurement

SECRET_ENV = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
SUMMARY_LINE = re.compile(r"^([A-Za-z_][\w.\-]*):\s+(\S.*?)\s*$")
INTEGER = re.compile(r"[+-]?[0-9]+")
FLOAT = re.compile(
    r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE
)
GRACE_SECONDS = 5.0
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
    returncode: int | None
    seconds: float
    log_path: Path
    reason: str | None = None
    span: tuple[int, int] = (0, 0)  # where this command's output lies in the (shared) log

    def output(self) -> str:
        """Everything this command wrote (other runs in the same log excluded)."""
        with open(self.log_path, "rb") as log:
            log.seek(self.span[0])
            return log.read(self.span[1] - self.span[0]).decode("utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


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
    if result.status != "ok":
        return Measurement(result.status, reason=result.reason, seconds=result.seconds)
    try:
        value, extras = read_metric(result.output(), metric)
    except SummaryError as error:
        return Measurement("crash", reason=str(error), seconds=result.seconds)
    return Measurement("ok", value, extras, seconds=result.seconds)


def clean_env(passthrough: list[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The harness's environment without secrets, except those the target declares it needs."""
    env = {k: v for k, v in os.environ.items() if k in passthrough or not SECRET_ENV.search(k)}
    env.update(extra or {})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def network_isolation_prefix() -> list[str]:
    """``unshare`` arguments that run a command without network; raises where impossible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise OSError("--no-network needs the 'unshare' command (util-linux); install it")
    probe = subprocess.run([unshare, "--net", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        probe = subprocess.run([unshare, "--net", "true"], capture_output=True)
        if probe.returncode != 0:
            raise OSError(
                "--no-network needs network namespaces, which this system refuses "
                f"({probe.stderr.decode().strip() or 'unshare failed'}); run without it"
            )
        return [unshare, "--net"]
    return [unshare, "--net", "--map-root-user"]


def _die_with_parent():
    """In the child: SIGKILL it when the harness dies (Linux), so no evaluator outlives a kill -9."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _proc_stat(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _group_members(pgid: int) -> list[list[str]]:
    """Stat fields of every live (non-zombie) process in a process group (Linux /proc)."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _proc_stat(entry.name)
            if fields and fields[2] == str(pgid) and fields[0] != "Z":
                members.append(fields)
    return members


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in a process group."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(int(fields[21]) * page for fields in _group_members(pgid))


def group_alive(pgid: int) -> bool:
    return bool(_group_members(pgid))


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    fields = _proc_stat(str(pid))
    return fields is not None and fields[0] != "Z"


def kill_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """TERM, then after ``grace`` seconds KILL, a whole process group."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(POLL_SECONDS)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Runner:
    """Runs evaluator commands in their own process group under a deadline and limits.

    One Runner serves a whole run: ``interrupt()`` (from a signal handler) stops the command in
    flight, ``on_start`` learns each child's process group so a resumed run can reap orphans.
    """

    def __init__(
        self,
        memory_limit_mb: float | None = None,
        log_limit_mb: float | None = None,
        no_network: bool = False,
        env_passthrough: list[str] | None = None,
        on_start=None,
    ):
        self.memory_limit = memory_limit_mb * 2**20 if memory_limit_mb else None
        self.log_limit = int(log_limit_mb * 2**20) if log_limit_mb else None
        self.prefix = network_isolation_prefix() if no_network else []
        self.env_passthrough = list(env_passthrough or [])
        self.on_start = on_start
        self.interrupted = threading.Event()
        self.clock: PhaseClock | None = None  # the phase of the command in flight (live display)
        # Called with each progress line's values; a returned string stops the command (early abort).
        self.on_progress: Callable[[dict[str, float]], str | None] | None = None

    def interrupt(self) -> None:
        self.interrupted.set()

    def _limits(self):
        _die_with_parent()
        if self.log_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.log_limit, self.log_limit))

    def run(
        self,
        command: str | list[str],
        cwd: Path,
        log_path: Path,
        deadline: float | Allowances,
        env: dict[str, str] | None = None,
    ) -> RunResult:
        """Run ``command`` (a shell string or argv) with output appended to ``log_path``.

        ``deadline``: seconds (one fixed deadline), or per-phase ``Allowances`` that follow the
        command's ``phase:`` lines (see ``protocol``).
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(log_path, "ab") as log:
            offset = log.tell()
            proc = subprocess.Popen(
                self.prefix + argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(self.env_passthrough, env),
                start_new_session=True,
                preexec_fn=self._limits,
            )
        if self.on_start:
            self.on_start(proc.pid)
        self.clock = PhaseClock(deadline, started)
        try:
            with open(log_path, "rb") as output:
                output.seek(offset)
                status, reason = self._watch(proc, self.clock, output)
        finally:
            self.clock = None
            if self.on_start:
                self.on_start(None)
        seconds = time.monotonic() - started
        if status == "ok" and proc.returncode != 0:
            status, reason = "crash", _exit_reason(proc.returncode)
        span = (offset, log_path.stat().st_size)
        if status == "crash" and self.log_limit and span[1] >= self.log_limit:
            reason = LOG_FULL  # Python ignores SIGXFSZ: the write fails and it exits 1
        return RunResult(status, proc.returncode, seconds, log_path, reason, span)

    def _watch(self, proc: subprocess.Popen, clock: PhaseClock, output) -> tuple[str, str | None]:
        checked_memory = 0.0
        while proc.poll() is None:
            now = time.monotonic()
            if self.interrupted.is_set():
                return self._stop(proc, "interrupted", "stopped by the user")
            for progress in clock.feed(output.read().decode("utf-8", errors="replace"), now):
                stop = self.on_progress(progress) if self.on_progress else None
                if stop:
                    return self._stop(proc, "aborted", stop)
            if now > clock.deadline:
                return self._stop(proc, "timeout", clock.overrun())
            if self.memory_limit and now - checked_memory > 0.5:
                checked_memory = now
                rss = group_rss_bytes(proc.pid)
                if rss > self.memory_limit:
                    limit_mb = self.memory_limit / 2**20
                    return self._stop(proc, "crash", f"memory {rss / 2**20:.0f} MB > {limit_mb:.0f}")
            time.sleep(POLL_SECONDS)
        kill_group(proc.pid, grace=0)  # children it left behind
        for progress in clock.feed(output.read().decode("utf-8", errors="replace") + "\n", time.monotonic()):
            if self.on_progress:
                self.on_progress(progress)  # the curve's last points; too late to stop anything
        return "ok", None

    def _stop(self, proc: subprocess.Popen, status: str, reason: str) -> tuple[str, str]:
        kill_group(proc.pid)
        proc.wait()
        return status, reason


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if name == "SIGXFSZ":
            return LOG_FULL
        return f"killed by {name}"
    if returncode - 128 in signal.valid_signals():  # a shell reports its child's signal N as 128+N
        return f"killed by {signal.Signals(returncode - 128).name} (exit code {returncode})"
    return f"exit code {returncode}"
