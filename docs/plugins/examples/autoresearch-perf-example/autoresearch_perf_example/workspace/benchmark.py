"""The timing harness (protected): how long multiply() takes, timed from outside its process.

runtime_ms = the median, over the timed runs, of the CPU milliseconds that one multiply(p, q)
costs the worker: a child process that imports multiply.py and answers the inputs sent to it.
This process never runs multiply.py's code. It reads the worker's CPU time (every thread, and
every process the worker starts) from the kernel just before it sends each input and just after
the answer comes back, so no clock the worker's code can replace takes part. Each run gets new
random operands from a seed drawn here: nothing can be computed ahead or cached between runs.
Every answer is checked, so nothing can be left unfinished either.

    python benchmark.py            # the timing harness
    python benchmark.py worker     # (started by it) the worker
"""

import ctypes
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

SIZE = 300  # coefficients in each operand; not a power of two, so the recursion meets many sizes
TIMED_MS = 1000  # time runs until their CPU milliseconds add up to this
MIN_REPEATS = 7  # and at least this many; the median is reported
PRIME = 2**61 - 1  # answers are checked at a random point modulo this prime


def operands(seed: int = 0) -> tuple[list[int], list[int]]:
    """One input: two operands of SIZE coefficients."""
    rng = random.Random(seed)
    return [rng.randint(-1000, 1000) for _ in range(SIZE)], [rng.randint(-1000, 1000) for _ in range(SIZE)]


def worker() -> None:
    """Answer each line of JSON operands on stdin with their product, one line of JSON."""
    from multiply import multiply

    multiply(*operands())  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        p, q = json.loads(line)
        print(json.dumps(multiply(p, q)), flush=True)


def at(coefficients: list[int], x: int) -> int:
    value = 0
    for c in reversed(coefficients):
        value = (value * x + c) % PRIME
    return value


def correct(p: list[int], q: list[int], product) -> bool:
    """Is ``product`` p·q? Checked at a random point: a wrong answer passes with chance < 1e-15."""
    if not isinstance(product, list) or len(product) != len(p) + len(q) - 1:
        return False
    if not all(type(c) is int for c in product):
        return False
    x = random.SystemRandom().randrange(PRIME)
    return at(p, x) * at(q, x) % PRIME == at(product, x)


def cpu_seconds() -> float:
    """CPU of the worker and every process it started (alive, or ended and waited for), and of
    orphans they left (this process adopts them: see ``adopt_orphans``)."""
    total = 0.0
    for proc in psutil.Process().children(recursive=True):  # the worker is one of them
        try:
            ended = proc.cpu_times()  # its children's, once waited for (in clock ticks)
            total += own_cpu(proc) + ended.children_user + ended.children_system
        except (psutil.NoSuchProcess, OSError):
            continue
    return total


def own_cpu(proc: psutil.Process) -> float:
    """User + system seconds of one process, all its threads: the kernel's exact count on Linux
    (its process CPU clock), else psutil's."""
    if sys.platform == "linux":
        return time.clock_gettime_ns(((~proc.pid) << 3) | 2) / 1e9  # CPUCLOCK_SCHED of that pid
    times = proc.cpu_times()
    return times.user + times.system


def adopt_orphans() -> None:
    """Linux: be a subreaper (a process the worker's children detach from stays in our tree) and
    not dumpable (the worker cannot read or write this process's memory)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def main() -> None:
    adopt_orphans()
    rng = random.Random(random.SystemRandom().getrandbits(64))  # unknown to the worker
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            [sys.executable, __file__, "worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=errors, text=True,
        )
        times, walls = [], []
        try:
            if child.stdout.readline() != "ready\n":
                raise SystemExit("the worker did not start (see its output above)")
            while len(times) < MIN_REPEATS or sum(times) < TIMED_MS / 1000:
                p, q = operands(rng.getrandbits(64))
                request = json.dumps([p, q]) + "\n"
                before, started = cpu_seconds(), time.perf_counter()
                child.stdin.write(request)
                child.stdin.flush()
                answer = child.stdout.readline()
                after, ended = cpu_seconds(), time.perf_counter()
                if not correct(p, q, json.loads(answer) if answer else None):
                    raise SystemExit("multiply() gave a wrong answer for random operands")
                times.append(after - before)
                walls.append(ended - started)
        finally:
            child.kill()
            child.wait()
            errors.seek(0)
            for line in errors.read().decode(errors="replace").splitlines()[-20:]:
                print(f"worker| {line}")  # prefixed: nothing the worker prints can pass for a summary
    print("---")
    print(f"runtime_ms:  {statistics.median(times) * 1000:.3f}")
    print(f"repeats:     {len(times)}")
    print(f"timed_ms:    {sum(times) * 1000:.1f}")
    print(f"wall_ms:     {statistics.median(walls) * 1000:.3f}")


if __name__ == "__main__":
    worker() if sys.argv[1:] == ["worker"] else main()
