"""The timing harness (protected): how long multiply() takes on a fixed input.

runtime_ms = the median, over REPEATS runs, of the CPU milliseconds one multiply(p, q) takes.
CPU time of this process, not wall time, so other programs on the machine matter less.
"""

import random
import statistics
import time
import timeit

from multiply import multiply

SIZE = 300  # coefficients in each operand; not a power of two, so the recursion meets many sizes
REPEATS = 7  # timed runs; the median is reported


def operands() -> tuple[list[int], list[int]]:
    """The benchmark's input, the same every run."""
    rng = random.Random(0)
    return [rng.randint(-1000, 1000) for _ in range(SIZE)], [rng.randint(-1000, 1000) for _ in range(SIZE)]


def main() -> None:
    p, q = operands()
    multiply(p, q)  # warm-up
    times = timeit.repeat(lambda: multiply(p, q), timer=time.process_time, number=1, repeat=REPEATS)
    print("---")
    print(f"runtime_ms:  {statistics.median(times) * 1000:.3f}")
    print(f"repeats:     {REPEATS}")


if __name__ == "__main__":
    main()
