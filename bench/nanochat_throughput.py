"""
Training throughput of a nanochat_bpb preset on this machine: tokens/s, achieved FLOP/s and
MFU. Where no peak is on record (CPUs), the achieved FLOP/s is given as a fraction of a matrix
multiplication peak measured in the same run, in the same precision.

    python bench/nanochat_throughput.py                  # the preset this hardware gets
    python bench/nanochat_throughput.py --preset cpu --steps 20
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nanochat_gpu_d8 import configure, prepare, print_block, time_training  # noqa: E402

from autoresearch.plugins.nanochat_bpb import PRESETS, detect_preset  # noqa: E402


def matmul_peak(device: torch.device, size: int = 1024, repeats: int = 20) -> float:
    """The best FLOP/s of square matrix products in the compute dtype, as a practical peak."""
    dtype = prepare.compute_dtype(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        prepare.synchronize(device)
        started = time.perf_counter()
        a @ b
        prepare.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps")
    args = parser.parse_args()
    preset = PRESETS[args.preset or detect_preset(args.device)]
    settings = preset["settings"]
    device = configure(args.device, {**preset["train"], "MAX_SEQ_LEN": settings["MAX_SEQ_LEN"]})
    result = {"preset": args.preset or detect_preset(args.device)}
    result.update(time_training(settings["VOCAB_SIZE"], device, args.steps, args.warmup))
    if "mfu_percent" not in result:
        peak = matmul_peak(device)
        result["matmul_peak_tflops"] = peak / 1e12
        result["fraction_of_matmul_peak"] = result["achieved_tflops"] * 1e12 / peak
    print_block(result)


if __name__ == "__main__":
    main()
