"""Measurement slots: how many measurements run at once, and on which accelerator each.

A slot is a place one measurement runs: an accelerator (``CUDA_VISIBLE_DEVICES``) or, on a CPU, a
share of the cores (``OMP_NUM_THREADS`` and ``AUTORESEARCH_THREADS``, which a target reads to size
its thread pools). Confirmation runs of a decision take a free slot ahead of new candidates.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .target import ConfigError

CONFIRM, CANDIDATE = 0, 1  # priorities: a decision's confirmation runs go first
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "AUTORESEARCH_THREADS")


@dataclass(frozen=True)
class Slot:
    index: int
    env: dict[str, str] = field(default_factory=dict)  # what the evaluator's environment gets


def parse_devices(text: str | None) -> list[str]:
    """``0,1`` or ``cuda:0,cuda:1`` -> ``["0", "1"]``; a clear error for anything else."""
    if not text:
        return []
    devices = []
    for item in text.split(","):
        index = item.strip().removeprefix("cuda:")
        if not index.isdigit():
            raise ConfigError(f"--devices: {item.strip()!r} is not a GPU index like 0 or cuda:0")
        devices.append(index)
    if len(set(devices)) != len(devices):
        raise ConfigError(f"--devices {text}: a GPU is named twice; give each slot its own")
    return devices


def accelerator_count() -> int:
    """GPUs this machine has (torch's count; 0 without CUDA)."""
    import torch  # only when --devices is given: importing torch takes a second

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def make_slots(slots: int | None, devices: list[str]) -> list[Slot]:
    """One ``Slot`` per measurement at once; without --slots, one per device (or one)."""
    count = slots or max(1, len(devices))
    if count < 1:
        raise ConfigError("--slots must be 1 or more")
    if devices:
        if count > len(devices):
            raise ConfigError(f"--slots {count} but --devices names {len(devices)}; give one device per slot")
        available = accelerator_count()
        missing = [d for d in devices if int(d) >= available]
        if missing:
            raise ConfigError(
                f"--devices: GPU {missing[0]} does not exist (this machine has {available}); "
                "see nvidia-smi for the indices"
            )
        return [Slot(i, {"CUDA_VISIBLE_DEVICES": devices[i]}) for i in range(count)]
    if count == 1:
        return [Slot(0)]  # one slot: the environment exactly as without slots
    threads = str(max(1, (os.cpu_count() or 1) // count))
    return [Slot(i, dict.fromkeys(THREAD_VARIABLES, threads)) for i in range(count)]


class SlotPool:
    """Hands out free slots, confirmation runs first, then in the order they were asked for."""

    def __init__(self, slots: list[Slot]):
        self.size = len(slots)
        self.free = list(slots)
        self.waiting: list[tuple[int, int]] = []  # (priority, ticket), a heap
        self.given: dict[int, Slot] = {}
        self.changed = threading.Condition()
        self.tickets = itertools.count()

    @contextmanager
    def take(self, priority: int = CANDIDATE) -> Iterator[Slot]:
        """Wait for a free slot and hold it for the block."""
        ticket = next(self.tickets)
        with self.changed:
            heapq.heappush(self.waiting, (priority, ticket))
            self._hand_out()
            self.changed.wait_for(lambda: ticket in self.given)
            slot = self.given.pop(ticket)
        try:
            yield slot
        finally:
            with self.changed:
                self.free.append(slot)
                self.free.sort(key=lambda s: s.index)
                self._hand_out()

    def _hand_out(self) -> None:
        while self.free and self.waiting:
            _, ticket = heapq.heappop(self.waiting)
            self.given[ticket] = self.free.pop(0)
        self.changed.notify_all()
