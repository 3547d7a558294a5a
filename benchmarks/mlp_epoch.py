"""One training epoch of the 2012 paper's MNIST MLP: no dropout vs torch's dropout vs dropkit's.

784-800-800-10 ReLU network, mini-batches of 100, SGD with momentum, 20% input and 50% hidden
dropout, on 60,000 random MNIST-sized inputs (the data only sets the shapes; timing does not depend
on it). The three variants run interleaved, round by round, so that machine noise hits them alike;
the script prints the median epoch time of each and its ratio over no dropout (target for dropkit:
at most 1.05x). ``benchmarks/contended.py`` runs the same epochs beside a busy process.

    python benchmarks/mlp_epoch.py                  # 3 rounds of full epochs
    python benchmarks/mlp_epoch.py --batches 200    # shorter epochs
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


def build(kind: str) -> nn.Sequential:
    def drop(p: float) -> nn.Module:
        if kind == "none":
            return nn.Identity()
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
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if not 1 <= args.batches <= SAMPLES // BATCH:
        parser.error(f"--batches must be in [1, {SAMPLES // BATCH}], got {args.batches}")

    torch.manual_seed(0)
    data = torch.rand(SAMPLES, INPUTS)
    labels = torch.randint(0, CLASSES, (SAMPLES,))
    models = {name: build(kind) for name, kind in VARIANTS.items()}
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
    dk_ratio = rows[2][2]
    verdict = "met" if dk_ratio <= TARGET else "NOT met"
    print(f"target dropkit <= {TARGET}x no dropout: measured {dk_ratio:.2f}x -> {verdict}")


if __name__ == "__main__":
    main()
