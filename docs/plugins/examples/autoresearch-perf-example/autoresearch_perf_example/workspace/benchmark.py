"""The timing harness (protected): how long multiply() takes on a fixed input.

runtime_ms = the median, over the timed runs, of the CPU milliseconds one multiply(p, q) takes.
CPU time of this process, not wall time, so other programs on the machine matter less. Runs are
timed until TIMED_MS of CPU is spent in them, and timed_ms reports that sum: the harness measures
this process's CPU from outside, so a clock that lies about it is caught.
"""

import random
import statistics
import time

from multiply import multiply

SIZE = 300  # coefficients in each operand; not a power of two, so the recursion meets many sizes
TIMED_MS = 1000  # time runs until their CPU milliseconds add up to this
MIN_REPEATS = 7  # and at least this many; the median is reported


def operands() -> tuple[list[int], list[int]]:
    """The benchmark's input, the same every run."""
    rng = random.Random(0)
    return [rng.randint(-1000, 1000) for _ in range(SIZE)], [rng.randint(-1000, 1000) for _ in range(SIZE)]


def main() -> None:
    p, q = operands()
    multiply(p, q)  # warm-up
    times = []
    while len(times) < MIN_REPEATS or sum(times) < TIMED_MS / 1000:
        started = time.process_time()
        multiply(p, q)
        times.append(time.process_time() - started)
    print("---")
    print(f"runtime_ms:  {statistics.median(times) * 1000:.3f}")
    print(f"repeats:     {len(times)}")
    print(f"timed_ms:    {sum(times) * 1000:.1f}")


if __name__ == "__main__":
    main()
