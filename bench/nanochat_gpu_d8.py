"""
Training throughput of the original autoresearch configuration (depth 8, 2048-token context,
524,288-token batches, bf16, torch.compile, SSSL windows through flex_attention) on one GPU.

Needs only torch, numpy and tiktoken, and the two workspace scripts next door; no data (the
batches are random tokens, which cost the model exactly what real ones do). A few minutes on one
H100/H200, most of it compilation:

    python bench/nanochat_gpu_d8.py
    python bench/nanochat_gpu_d8.py --device cpu --depth 1 --seq 64 --device-batch 2 \
        --total-batch 256 --steps 2 --warmup 1 --no-compile      # a CPU smoke test

Prints a `---` block: tokens/s, achieved TFLOP/s, MFU (where the GPU's peak is known), peak
memory, compile and step times. The original reports 39.8% MFU on an H100 with Flash-Attention-3.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

TEMPLATE = Path(__file__).resolve().parent.parent / "plugins" / "nanochat_bpb" / "template"
sys.path.insert(0, str(TEMPLATE))

import prepare  # noqa: E402  (the template's scripts, found through the path above)
import train  # noqa: E402


def configure(device: str, constants: dict) -> torch.device:
    """Point the template's scripts at ``device`` and set train.py constants (e.g. DEPTH)."""
    prepare.DEVICE = device
    for name, value in constants.items():
        setattr(train, name, value)
    return prepare.get_device()


def time_training(vocab_size: int, device: torch.device, steps: int, warmup: int) -> dict:
    """Build train.py's model and optimizer as its main() does; time ``steps`` optimizer steps
    on random tokens after ``warmup`` untimed ones (compilation)."""
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")
    model, config = train.build_model(vocab_size, device)
    compiled = train.COMPILE and device.type == "cuda"
    optimizer = model.setup_optimizer(
        train.UNEMBEDDING_LR,
        train.EMBEDDING_LR,
        train.MATRIX_LR,
        train.WEIGHT_DECAY,
        train.ADAM_BETAS,
        train.SCALAR_LR,
        compile_steps=compiled,
    )
    step_model = torch.compile(model, dynamic=False) if compiled else model
    B, T = train.DEVICE_BATCH_SIZE, train.MAX_SEQ_LEN
    grad_accum = train.TOTAL_BATCH_SIZE // (B * T)

    def step():
        for _ in range(grad_accum):
            tokens = torch.randint(0, vocab_size, (B, T + 1), device=device)
            with prepare.autocast(device):
                loss = step_model(tokens[:, :-1], tokens[:, 1:])
            (loss / grad_accum).backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)

    started = time.time()
    for _ in range(warmup):
        step()
    prepare.synchronize(device)
    warmup_seconds = time.time() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.time()
    for _ in range(steps):
        step()
    prepare.synchronize(device)
    seconds = time.time() - started

    tokens_per_second = steps * grad_accum * B * T / seconds
    flops = model.estimate_flops() * tokens_per_second
    result = {
        "device": str(torch.cuda.get_device_name(device) if device.type == "cuda" else device),
        "tokens_per_second": tokens_per_second,
        "achieved_tflops": flops / 1e12,
        "step_ms": 1000 * seconds / steps,
        "warmup_seconds": warmup_seconds,
        "num_params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "depth": config.n_layer,
        "model_dim": config.n_embd,
    }
    peak = prepare.peak_flops(device)
    if peak:
        result["mfu_percent"] = 100 * flops / peak
    if device.type == "cuda":
        result["peak_vram_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def print_block(result: dict) -> None:
    print("---")
    for key, value in result.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key + ':':<26}{text}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--device-batch", type=int, default=128)
    parser.add_argument("--total-batch", type=int, default=2**19)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    device = configure(
        args.device,
        {
            "DEPTH": args.depth,
            "MAX_SEQ_LEN": args.seq,
            "DEVICE_BATCH_SIZE": args.device_batch,
            "TOTAL_BATCH_SIZE": args.total_batch,
            "COMPILE": not args.no_compile,
        },
    )
    print_block(time_training(args.vocab, device, args.steps, args.warmup))


if __name__ == "__main__":
    main()
