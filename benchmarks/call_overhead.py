"""What one small dropout call costs, layer by layer, with cold caches.

In a training step every dropout call follows other work (a matrix multiply, another layer) that
has pushed the interpreter's and the op's data out of the CPU caches, so a call costs several
times what a tight ``timeit`` loop shows. This script times each call right after a 16 MiB
in-place multiply (which evicts the caches) on a tensor small enough that the kernel's own work
is negligible, and prints the median of many such calls for each layer of dropkit's eager route
beside torch's dropout3d:

    python benchmarks/call_overhead.py            # 400 rounds
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dropkit import functional as DF
from dropkit import kernels, rng
from dropkit.kernels import cpu
from dropkit.ops import KEEP, checks

SHAPE = (16, 32, 2, 2, 2)
MASK = [16, 32, 1, 1, 1]


def layers(x: torch.Tensor, leaf: torch.Tensor, grad: torch.Tensor) -> dict:
    threshold, scale = rng.keep_threshold(0.5), 2.0

    def argument_checks():
        checks.check_tensor(x, "dropout3d")
        checks.check_probability(0.5, op="dropout3d")
        checks.check_offset(0)
        checks.check_floating(x, "dropout3d")

    return {
        "torch.nn.functional.dropout3d": lambda: torch.nn.functional.dropout3d(x, 0.5),
        "kernel (kernels.cpu, ctypes)": lambda: cpu.apply_keep_mask(
            x, 5, 0, threshold, scale, None, tuple(MASK)
        ),
        "+ dropkit.kernels contract": lambda: kernels.apply_keep_mask(
            x, 5, 0, threshold, scale, mask_shape=MASK
        ),
        "+ op (ops.KEEP)": lambda: KEEP(x, 5, 0, True, threshold, scale, MASK),
        "dropkit.functional.dropout3d": lambda: DF.dropout3d(x, 0.5),
        "  seed draw alone (rng.draw_seed)": rng.draw_seed,
        "  four argument checks alone": argument_checks,
        "torch dropout3d fwd+bwd": lambda: torch.nn.functional.dropout3d(leaf, 0.5).backward(grad),
        "dropkit dropout3d fwd+bwd": lambda: DF.dropout3d(leaf, 0.5).backward(grad),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=400, help="timed calls per layer (>= 1)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    evict = torch.randn(4 * 2**20)  # 16 MiB, larger than the L2 caches
    x = torch.randn(SHAPE)
    leaf = x.clone().requires_grad_()
    grad = torch.ones_like(x)
    calls = layers(x, leaf, grad)
    for call in calls.values():  # warm-up: library load, allocator
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            evict.mul_(1.0)
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    print(
        f"{'x'.join(map(str, SHAPE))} float32, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; each call right after a 16 MiB pass; "
        f"medians of {args.rounds} (µs)"
    )
    for name, values in times.items():
        print(f"{name:36s} {statistics.median(values) * 1e6:8.1f}")


if __name__ == "__main__":
    main()
