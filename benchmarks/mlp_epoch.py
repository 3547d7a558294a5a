"""One training epoch of the 2012 paper's MNIST MLP: no dropout vs torch's dropout vs dropkit's.

784-800-800-10 ReLU network, mini-batches of 100, SGD with momentum, 20% input and 50% hidden
dropout, on 60,000 random MNIST-sized inputs (the data only sets the shapes; timing does not depend
on it). The three variants run interleaved, round by round, so that machine noise hits them alike;
the script prints the median epoch time of each and its ratio over no dropout (target for dropkit:
at most 1.05x). ``benchmarks/contended.py`` runs the same epochs beside a busy process.

    python benchmarks/mlp_epoch.py                  # 3 rounds of full epochs
    python benchmarks/mlp_epoch.py --batches 200    # shorter epochs
    python benchmarks/mlp_epoch.py --floor          # + what any Python-defined dropout costs here

``--floor`` adds two diagnostic variants that bypass dropkit's op layer: "kernel alone" calls the
C++ keep-mask kernel (``dropkit.kernels.apply_keep_mask``) from a minimal ``autograd.Function``
(forward and backward), and "plumbing alone" is that same Function doing no work at all (it
returns an uninitialised tensor). Their ratios bound what any dropout implemented through a Python
``autograd.Function`` over this kernel could reach in this loop: what dropkit adds above "kernel
alone" is its op layer (argument checks, seed, routing).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import dropkit

INPUTS, HIDDEN, CLASSES, BATCH, SAMPLES = 784, 800, 10, 100, 60_000
TARGET = 1.05
VARIANTS = {"no dropout": "none", "torch.nn.Dropout": "torch", "dropkit.nn.Dropout": "dropkit"}
FLOOR_VARIANTS = {"kernel alone": "kernel", "plumbing alone": "plumbing"}


class _Floor(torch.autograd.Function):
    """The least a Python-defined dropout does: the kernel (or nothing) forward and backward."""

    @staticmethod
    def forward(ctx, x, seed, threshold, scale, run_kernel):
        ctx.stream = (seed, threshold, scale, run_kernel)
        return _floor_apply(x, seed, threshold, scale, run_kernel)

    @staticmethod
    def backward(ctx, grad):
        return _floor_apply(grad.contiguous(), *ctx.stream), None, None, None, None


def _floor_apply(x, seed, threshold, scale, run_kernel):
    if not run_kernel:
        return torch.empty_like(x)
    return dropkit.kernels.apply_keep_mask(x, seed, 0, threshold, scale)


class _FloorDropout(nn.Module):
    def __init__(self, p: float, run_kernel: bool) -> None:
        super().__init__()
        self.threshold, self.scale = dropkit.rng.keep_threshold(p), 1.0 / (1.0 - p)
        self.run_kernel, self.calls = run_kernel, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1  # a fresh seed per call, as a real dropout draws
        args = (self.calls, self.threshold, self.scale, self.run_kernel)
        if x.requires_grad:
            return _Floor.apply(x, *args)
        return _floor_apply(x, *args)


def build(kind: str) -> nn.Sequential:
    def drop(p: float) -> nn.Module:
        if kind == "none":
            return nn.Identity()
        if kind in ("kernel", "plumbing"):
            return _FloorDropout(p, run_kernel=kind == "kernel")
        return nn.Dropout(p) if kind == "torch" else dropkit.nn.Dropout(p)

    return nn.Sequential(
        drop(0.2),
        nn.Linear(INPUTS, HIDDEN),
        nn.ReLU(),
        drop(0.5),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        drop(0.5),
        nn.Linear(HIDDEN, CLASSES),
    )


def epoch(model: nn.Module, data: torch.Tensor, labels: torch.Tensor, batches: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    start = time.perf_counter()
    for b in range(batches):
        x = data[b * BATCH : (b + 1) * BATCH]
        y = labels[b * BATCH : (b + 1) * BATCH]
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 1)")
    parser.add_argument(
        "--batches", type=int, default=SAMPLES // BATCH, help="mini-batches per epoch (1..600)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--floor", action="store_true", help='add the "kernel alone" and "plumbing alone" variants'
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if not 1 <= args.batches <= SAMPLES // BATCH:
        parser.error(f"--batches must be in [1, {SAMPLES // BATCH}], got {args.batches}")

    torch.manual_seed(0)
    data = torch.rand(SAMPLES, INPUTS)
    labels = torch.randint(0, CLASSES, (SAMPLES,))
    variants = {**VARIANTS, **(FLOOR_VARIANTS if args.floor else {})}
    models = {name: build(kind) for name, kind in variants.items()}
    for model in models.values():  # warm-up: kernel build or cache load, allocator
        epoch(model, data, labels, min(20, args.batches))
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name, model in models.items():
            times[name].append(epoch(model, data, labels, args.batches))
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items())
        )

    base = statistics.median(times["no dropout"])
    rows = [(name, statistics.median(t), statistics.median(t) / base) for name, t in times.items()]
    print(
        f"\n{args.batches} mini-batches of {BATCH}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.rounds} rounds"
    )
    if args.markdown:
        print(
            "| variant | epoch time (s) | ratio over no dropout | added per mini-batch (ms) |\n"
            "|---|---|---|---|"
        )
        for name, seconds, ratio in rows:
            added = (seconds - base) / args.batches * 1e3
            print(f"| {name} | {seconds:.2f} | {ratio:.2f}x | {added:.2f} |")
    else:
        for name, seconds, ratio in rows:
            added = (seconds - base) / args.batches * 1e3
            print(f"{name:>20}  {seconds:7.2f} s  {ratio:5.2f}x  {added:+6.2f} ms/batch")
    dk_ratio = dict((name, ratio) for name, _, ratio in rows)["dropkit.nn.Dropout"]
    verdict = "met" if dk_ratio <= TARGET else "NOT met"
    print(f"target dropkit <= {TARGET}x no dropout: measured {dk_ratio:.2f}x -> {verdict}")


if __name__ == "__main__":
    main()
