"""``demo``: the same MLP on the embedded 8x8 digits with no dropout, dropout, Gaussian dropout and
DropConnect, a few seeds each, mean ± std test error; needs no download, about a minute.

It opens with a side-by-side of :class:`dropkit.nn.Dropout` and ``torch.nn.Dropout``: the
fraction of elements kept, the bytes each keeps alive for the backward pass (dropkit keeps only
the 8-byte seed and regenerates the mask; torch keeps its mask tensor) and the time of a forward
plus backward pass.
"""

from __future__ import annotations

import statistics
import time

import torch

from dropkit_lab.engine.model import MLPConfig
from dropkit_lab.experiments.base import Experiment, RunSpec
from dropkit_lab.experiments.common import (
    available,
    check,
    error_table,
    group_means,
    hinton_recipe,
    missing_methods_note,
    seed_list,
)
from dropkit_lab.text import plural

METHODS = {
    "no dropout": {"method": "none"},
    "dropout 10%/50%": {"method": "dropout", "input_p": 0.1, "hidden_p": 0.5},
    "Gaussian dropout 10%/50%": {"method": "gaussian", "input_p": 0.1, "hidden_p": 0.5},
    # On the last hidden layer only (as Wan et al. use it before the classifier): DropConnect
    # layers cost much more than dropout, and the demo must stay short.
    "DropConnect 50%, last hidden layer (+10% input dropout)": {
        "method": "dropconnect",
        "input_p": 0.1,
        "hidden_p": 0.5,
        "hidden_noise_on": "last",
    },
}

# The digits have 64 inputs: 20% input dropout (the MNIST setting) is too much noise for them.
PROFILES = {
    "smoke": {"widths": (64, 64), "epochs": 3, "train_size": 300},
    "quick": {"widths": (256, 256), "epochs": 100, "train_size": None},
    "paper": {"widths": (256, 256), "epochs": 300, "train_size": None},
}
RECIPE = {
    "lr": 0.3,
    "lr_decay": 0.99,
    "momentum_end": 0.9,
    "momentum_epochs": 10,
    "max_norm": 3.0,
    "batch_size": 32,
}


def _saved_bytes(fn, x: torch.Tensor) -> int:
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() != x.data_ptr():  # the input itself is not extra memory
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


def _time_ms(fn, x: torch.Tensor, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x).sum().backward()
        times.append(time.perf_counter() - t0)
        x.grad = None
    return 1000.0 * statistics.median(times)


def dropout_comparison(numel: int = 1 << 20, p: float = 0.5) -> dict:
    """Keep rate, bytes saved for backward and forward+backward time, dropkit vs torch."""
    from dropkit import nn as dnn

    layers = {"dropkit.nn.Dropout": dnn.Dropout(p), "torch.nn.Dropout": torch.nn.Dropout(p)}
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, layer in layers.items():
            x = torch.ones(numel, requires_grad=True)
            keep = float((layer(x) != 0).float().mean())
            saved = _saved_bytes(layer, x)
            layer(x).sum().backward()  # warm-up (builds or loads the CPU kernels)
            x.grad = None
            ms = _time_ms(layer, x)
            rows.append([name, f"{keep:.4f}", f"{saved:,}", f"{ms:.2f}"])
    sigma = (p * (1 - p) / numel) ** 0.5
    return {
        "title": (
            f"Dropout p={p} on {numel:,} float32 elements "
            f"(this machine, {plural(torch.get_num_threads(), 'thread')})"
        ),
        "columns": ["layer", "fraction kept", "bytes saved for backward", "forward+backward (ms)"],
        "rows": rows,
        "note": f"expected fraction kept {1 - p} ± {sigma:.4f} (1 sigma); times are medians of 7",
    }


class Demo(Experiment):
    name = "demo"
    title = "No dropout vs dropout vs Gaussian dropout vs DropConnect on the embedded digits"
    paper = (
        "Srivastava et al. 2014 (dropout, Gaussian dropout), Wan et al. 2013 (DropConnect); "
        "no published numbers for this dataset"
    )
    dataset = "digits"
    default_seeds = {"smoke": 1, "quick": 3, "paper": 10}

    def runs(self, profile: str, seeds: int) -> list[RunSpec]:
        cfg = PROFILES[profile]
        specs = []
        for group, kw in METHODS.items():
            if not available(kw["method"]):
                continue
            for seed in seed_list(seeds):
                model = MLPConfig(64, cfg["widths"], 10, init_std=0.1, **kw)
                train = hinton_recipe(cfg["epochs"], seed, **RECIPE)
                run_id = f"{kw['method']}-s{seed}"
                specs.append(
                    RunSpec(run_id, group, seed, "digits", model, train, cfg["train_size"])
                )
        return specs

    def preamble(self) -> dict:
        return dropout_comparison()

    def summarize(self, profile: str, results: list[dict]) -> dict:
        groups = self.by_group(results)
        groups = {g: groups[g] for g in METHODS if g in groups}
        means = group_means(groups)
        notes = missing_methods_note([kw["method"] for kw in METHODS.values()])
        cfg = PROFILES[profile]
        widths = "-".join(map(str, (64, *cfg["widths"], 10)))
        notes.append(
            f"recipe: {widths} ReLU, {cfg['epochs']} epochs, SGD lr {RECIPE['lr']} decaying "
            f"{RECIPE['lr_decay']}/epoch, momentum 0.5->{RECIPE['momentum_end']} over "
            f"{RECIPE['momentum_epochs']} epochs with (1-m) step scaling, max-norm "
            f"{RECIPE['max_norm']}, batch {RECIPE['batch_size']}, N(0, 0.1^2) init; "
            f"{cfg['train_size'] or 1297} training / 500 test digits (fixed split)."
        )
        checks = []
        if "no dropout" in means:
            for group, value in means.items():
                if group != "no dropout":
                    checks.append(
                        check(
                            f"{group} beats no dropout",
                            value < means["no dropout"],
                            f"{100 * value:.2f}% vs {100 * means['no dropout']:.2f}%",
                        )
                    )
        return {
            "tables": [error_table("Test error on the 8x8 digits", groups)],
            "checks": checks,
            "notes": notes,
            "comparable": None,
        }
