"""Monte-Carlo dropout: batched replicas (and a reused prefix) against a plain loop of passes.

Times ``dropkit.mc.mc_predict`` with ``batch_replicas=False`` (one forward per sample) and
``batch_replicas=True`` (the T samples as replicas along dim 0, chunked to ``max_rows``), with the
deterministic prefix detected or not, interleaved round by round; prints medians and the ratio
loop/batched (> 1: batching is faster). Also checks that both runs give the same prediction.

    python benchmarks/mc.py            # a few rounds, well under a minute
    python benchmarks/mc.py --quick    # fewer rounds
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dropkit import mc
from dropkit import nn as dnn


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), dnn.Dropout(0.5),
        torch.nn.Linear(512, 512), torch.nn.ReLU(), dnn.Dropout(0.5), torch.nn.Linear(512, 10),
    )  # fmt: skip


def cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), dnn.Dropout2d(0.25), torch.nn.Flatten(),
        torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(), dnn.Dropout(0.5),
        torch.nn.Linear(128, 10),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    rounds = 3 if args.quick else 5
    torch.manual_seed(0)
    setups = [
        ("mlp 784-512-512-10", mlp().eval(), torch.randn(32, 784)),
        ("cnn 28x28 (prefix: conv/bn/pool)", cnn().eval(), torch.randn(8, 1, 28, 28)),
    ]
    variants = {
        "loop": {"batch_replicas": False, "prefix": None},
        "loop+prefix": {"batch_replicas": False, "prefix": "auto"},
        "batched": {"batch_replicas": True, "prefix": None},
        "batched+prefix": {"batch_replicas": True, "prefix": "auto"},
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, T={args.samples}")
    for title, model, x in setups:
        times = {name: [] for name in variants}
        means = {}
        for _ in range(rounds):
            for name, kwargs in variants.items():
                start = time.perf_counter()
                result = mc.mc_predict(model, x, args.samples, seed=1, max_rows=4096, **kwargs)
                times[name].append(time.perf_counter() - start)
                means[name] = result.mean
        worst = max((means[n] - means["loop"]).abs().max().item() for n in variants)
        print(f"\n{title}, batch {x.shape[0]}: max |mean - loop mean| = {worst:.2e}")
        loop = statistics.median(times["loop"])
        for name in variants:
            median = statistics.median(times[name])
            print(f"  {name:15s} {median * 1e3:9.2f} ms   loop/this = {loop / median:5.2f}")


if __name__ == "__main__":
    main()
