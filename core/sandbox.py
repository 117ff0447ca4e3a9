"""The sandbox every evaluator command runs in (bubblewrap).

Inside it the whole filesystem is read-only (the measured checkout, the Python environment and
the data cache included) except the measurement's scratch folder; the target's secret paths are
empty; ``/dev`` is a fresh one with the basic devices and the host's GPU devices only (no
terminals of the user's to type into);
the network is off unless the target needs it; and the command is pid 1's child in a fresh PID
namespace, so every process it starts (``setsid`` daemons too) dies with it, and with the harness
(``--die-with-parent``). Where bubblewrap is missing or refused, commands run unsandboxed and
``weakness`` says so: the run prints it every time.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

INSTALL = "install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap)"
# What CUDA (NVIDIA) and ROCm (AMD) open; the driver's libraries are on the read-only root already.
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps/*", "/dev/dri/*", "/dev/kfd")
GPU_PROC = "/proc/driver/nvidia"  # the driver's parameters and GPU list, read by nvidia-smi and CUDA


@cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox here (None: it can)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed; {INSTALL}"
    probe = subprocess.run(
        [bwrap, *_base_args(network=False, devices=gpu_devices()), "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({probe.stderr.strip() or 'bwrap failed'})"
    return None


def available() -> bool:
    return bwrap_problem() is None


def weakness() -> str | None:
    """The warning a run prints when evaluators run without the sandbox, else None."""
    problem = bwrap_problem()
    if problem is None:
        return None
    return (
        f"warning: evaluators run WITHOUT a sandbox: {problem}. They can write outside their "
        "checkout, read the target's secret files, use the network and leave processes behind"
    )


def gpu_devices() -> list[str]:
    """The GPU device files of this machine (none on a machine without a GPU), as they are when a
    command starts: the driver makes ``/dev/nvidia-uvm`` at the machine's first CUDA use, which
    cannot happen inside the sandbox (unverified on a real GPU: ``bench/gpu_check.sh`` checks)."""
    found = {path for pattern in GPU_DEVICES for path in glob.glob(pattern)}
    return sorted(path for path in found if not Path(path).is_dir())  # /dev/nvidia* has nvidia-caps/


def _base_args(network: bool, devices: list[str]) -> list[str]:
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/dev/shm", "--proc", "/proc"]
    for device in devices:
        args += ["--dev-bind", device, device]
    if devices:
        args += ["--ro-bind-try", GPU_PROC, GPU_PROC]
    args += ["--unshare-pid", "--die-with-parent", "--unshare-ipc", "--unshare-uts"]
    return args if network else [*args, "--unshare-net"]


@dataclass(frozen=True)
class Sandbox:
    """Where one command may write, what it may not see, and whether it has network."""

    writable: tuple[Path, ...]
    hidden: tuple[Path, ...] = field(default=())
    network: bool = False

    def wrap(self, argv: list[str], cwd: Path, devices: list[str] | None = None) -> list[str]:
        """``argv`` run inside the sandbox (only where ``bwrap_problem()`` is None), with the
        machine's GPU devices (or ``devices``)."""
        devices = gpu_devices() if devices is None else devices
        args = [shutil.which("bwrap"), *_base_args(self.network, devices)]
        for path in self.writable:
            args += ["--bind", str(path), str(path)]
        for path in self.hidden:
            if path.is_dir():
                args += ["--tmpfs", str(path)]
            elif path.exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        return [*args, "--chdir", str(cwd), "--", *argv]
