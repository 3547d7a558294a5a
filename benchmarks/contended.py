"""The MLP epoch of ``benchmarks/mlp_epoch.py`` while other processes spin on the CPU.

Same 784-800-800-10 network, 20% input and 50% hidden dropout, mini-batches of 100; no dropout,
torch's dropout and dropkit's run interleaved, round by round, while ``--spinners`` processes
(default 1) each spin a busy loop. On a shared machine every variant slows down; what matters is
that dropout does not slow down *more* than training without it. A backend with its own thread
team (numba's OpenMP team beside torch's) did: its spinning threads and torch's fought for the
cores. Target: dropkit's ratio over no dropout <= max(1.10, torch's ratio), printed as a verdict.

Beside a spinner the machine's speed drifts by several times within minutes (an epoch without
dropout took 3 s in one round and 17 s a minute later), so the verdict uses *paired* ratios: in
each round the three variants run back to back, each variant's time is divided by that round's
no-dropout time, and the median over many short rounds is taken. The medians of the raw times are
printed too.

    python benchmarks/contended.py                  # 12 rounds of 50 mini-batches, 1 spinner
    python benchmarks/contended.py --spinners 2 --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

import torch
from mlp_epoch import BATCH, CLASSES, INPUTS, SAMPLES, VARIANTS, build, epoch

SPIN = "while True:\n    pass\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds (>= 1)")
    parser.add_argument("--batches", type=int, default=50, help="mini-batches per epoch (1..600)")
    parser.add_argument("--spinners", type=int, default=1, help="busy processes beside (>= 1)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if not 1 <= args.batches <= SAMPLES // BATCH:
        parser.error(f"--batches must be in [1, {SAMPLES // BATCH}], got {args.batches}")
    if args.spinners < 1:
        parser.error(f"--spinners must be >= 1, got {args.spinners}")

    torch.manual_seed(0)
    data = torch.rand(SAMPLES, INPUTS)
    labels = torch.randint(0, CLASSES, (SAMPLES,))
    models = {name: build(kind) for name, kind in VARIANTS.items()}
    for model in models.values():  # warm-up (kernel build or cache load, allocator), no spinner
        epoch(model, data, labels, min(20, args.batches))

    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.spinners)]
    try:
        times: dict[str, list[float]] = {name: [] for name in models}
        for r in range(args.rounds):
            for name, model in models.items():
                times[name].append(epoch(model, data, labels, args.batches))
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items())
            )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()

    base = statistics.median(times["no dropout"])
    paired = {
        name: statistics.median(t / b for t, b in zip(times[name], times["no dropout"]))
        for name in times
    }
    print(
        f"\n{args.batches} mini-batches of {BATCH} beside {args.spinners} spinning process(es), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    print(f"{'variant':>20}  median time  ratio of medians  median of paired ratios")
    for name, t in times.items():
        median = statistics.median(t)
        print(f"{name:>20}  {median:9.2f} s  {median / base:15.2f}x  {paired[name]:22.2f}x")
    dk, torch_ratio = paired["dropkit.nn.Dropout"], paired["torch.nn.Dropout"]
    target = max(1.10, torch_ratio)
    verdict = "met" if dk <= target else "NOT met"
    print(
        f"target dropkit <= max(1.10, torch {torch_ratio:.2f}x) = {target:.2f}x over no dropout "
        f"(paired): measured {dk:.2f}x -> {verdict}"
    )


if __name__ == "__main__":
    main()
