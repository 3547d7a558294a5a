"""Family part A beside torch: channel dropout 1d/2d/3d, alpha and feature-alpha dropout.

For each method torch also implements, times forward (under ``no_grad``) and forward+backward of
torch's and dropkit's functional on the same input, interleaved round by round so load on a shared
machine hits both alike, and prints medians (ms) and the ratio torch/dropkit (> 1: dropkit faster),
plus the ratio of the best rounds (less sensitive to other processes on a loaded machine).
A script, not a test; it runs in well under a minute.

    python benchmarks/family_a.py [--rounds 9] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dropkit import functional as DF

TNF = torch.nn.functional

CASES: list[tuple[str, tuple[int, ...], Callable, Callable]] = [
    ("dropout1d", (32, 128, 256), lambda x: TNF.dropout1d(x, 0.5), lambda x: DF.dropout1d(x, 0.5)),
    ("dropout2d", (32, 64, 32, 32), lambda x: TNF.dropout2d(x, 0.5),
     lambda x: DF.dropout2d(x, 0.5)),
    ("dropout3d", (8, 32, 16, 16, 16), lambda x: TNF.dropout3d(x, 0.5),
     lambda x: DF.dropout3d(x, 0.5)),
    ("alpha_dropout", (256, 2048), lambda x: TNF.alpha_dropout(x, 0.2, True),
     lambda x: DF.alpha_dropout(x, 0.2, True)),
    ("feature_alpha_dropout", (32, 64, 32, 32), lambda x: TNF.feature_alpha_dropout(x, 0.2, True),
     lambda x: DF.feature_alpha_dropout(x, 0.2, True)),
]  # fmt: skip


def _timings(shape: tuple[int, ...], theirs: Callable, ours: Callable, rounds: int) -> tuple:
    x = torch.randn(shape)
    leaf = x.clone().requires_grad_()
    grad = torch.ones_like(x)

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(x)

        return run

    def forward_backward(fn):
        def run():
            leaf.grad = None
            fn(leaf).backward(grad)

        return run

    runs = {
        ("torch", "fwd"): forward(theirs),
        ("dropkit", "fwd"): forward(ours),
        ("torch", "f+b"): forward_backward(theirs),
        ("dropkit", "f+b"): forward_backward(ours),
    }
    for run in runs.values():  # warm-up (first-call dispatch, allocator)
        run()
    times: dict = {key: [] for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(values) * 1e3 for key, values in times.items()}
    bests = {key: min(values) * 1e3 for key, values in times.items()}
    return medians, bests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds (>= 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"medians of {args.rounds} rounds (ms)\n")  # fmt: skip
    print("| method | shape | torch fwd | dropkit fwd | torch/dropkit | torch f+b | dropkit f+b "
          "| torch/dropkit | best-round ratio fwd / f+b |\n"
          "|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    slower = []
    for name, shape, theirs, ours in CASES:
        t, b = _timings(shape, theirs, ours, args.rounds)
        fwd = t[("torch", "fwd")] / t[("dropkit", "fwd")]
        both = t[("torch", "f+b")] / t[("dropkit", "f+b")]
        best_fwd = b[("torch", "fwd")] / b[("dropkit", "fwd")]
        best_both = b[("torch", "f+b")] / b[("dropkit", "f+b")]
        print(
            f"| {name} | {'x'.join(map(str, shape))} | {t[('torch', 'fwd')]:.2f} "
            f"| {t[('dropkit', 'fwd')]:.2f} | {fwd:.2f}x | {t[('torch', 'f+b')]:.2f} "
            f"| {t[('dropkit', 'f+b')]:.2f} | {both:.2f}x | {best_fwd:.2f}x / {best_both:.2f}x |"
        )
        if fwd < 1 or both < 1:
            slower.append(name)
    print("\ndropkit slower than torch for: " + (", ".join(slower) if slower else "none"))


if __name__ == "__main__":
    main()
