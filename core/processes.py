"""Process trees and groups, portably (psutil): who is alive, how much memory, how to end them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

import psutil

GRACE_SECONDS = 5.0
POLL_SECONDS = 0.05


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Every live (non-zombie) process in a process group."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


class _ProcessTable:
    """Who is whose parent, read from the process table at most every ``fresh`` seconds: the
    samplers of several slots measuring at once share one scan (each scan reads every process)."""

    def __init__(self, fresh: float = 0.1):
        self.fresh = fresh
        self.lock = threading.Lock()
        self.read_at = -fresh
        self.children: dict[int, list[int]] = {}

    def descendants(self, pid: int) -> list[int]:
        with self.lock:
            if time.monotonic() - self.read_at >= self.fresh:
                children: dict[int, list[int]] = {}
                for proc in psutil.process_iter(["ppid"]):
                    children.setdefault(proc.info["ppid"], []).append(proc.pid)
                self.children, self.read_at = children, time.monotonic()
            found, todo = [], list(self.children.get(pid, []))
            while todo:
                found.append(todo.pop())
                todo += self.children.get(found[-1], [])
            return found


_table = _ProcessTable()


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (daemons that ``setsid`` stay descendants in a sandbox)."""
    procs = []
    for member in (pid, *_table.descendants(pid)):
        try:
            procs.append(psutil.Process(member))
        except psutil.Error:
            continue
    return procs if procs and procs[0].pid == pid else []


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total = 0
    for proc in tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def die_with_parent() -> None:
    """In a child, before exec: be killed when the harness dies (Linux; elsewhere nothing).

    Only for commands outside the sandbox, whose ``--die-with-parent`` covers the whole tree.
    """
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def kill_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """TERM, then after ``grace`` seconds KILL, a whole process group."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(POLL_SECONDS)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class TreeUsage:
    """Samples a process tree in a thread: ``peak`` resident memory (the largest sum seen) and
    ``cpu_seconds``, the user + system time of every process seen in it, at its last sample.

    Sampled because a sandbox's PID namespace hides its processes' CPU from the harness's own
    rusage; a process that lives less than ``every`` seconds may go uncounted.
    """

    def __init__(self, pid: int, every: float = 0.1):
        self.pid = pid
        self.every = every
        self.peak = 0
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, start time) -> seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def __enter__(self) -> TreeUsage:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            rss = 0
            for proc in tree(self.pid):
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        rss += proc.memory_info().rss
                        self._cpu[(proc.pid, proc.create_time())] = times.user + times.system
                except psutil.Error:
                    continue
            self.peak = max(self.peak, rss)
            if self._stop.wait(self.every):
                return
