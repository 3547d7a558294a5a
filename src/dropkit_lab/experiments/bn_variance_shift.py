"""``bn-variance-shift``: dropout before batch normalisation (Li et al. 2019).

A 784-n-n-n-10 ReLU net with BatchNorm after every hidden linear map, trained with:

- no dropout (reference);
- 50% dropout after every hidden layer, so dropout feeds the next layer's BN ("before BN");
- 50% dropout after the last hidden layer only (Li et al.'s remedy: no dropout before any BN);
- 50% Gaussian dropout after every hidden layer (a remedy discussed alongside).

Measured for every BN layer: the variance shift, the mean over units of
``Var_test / Var_train`` where ``Var_train`` is BN's running variance (what it learnt to divide by
during noisy training) and ``Var_test`` the variance of its input over the test set in evaluation
mode; 1 means no shift. Also the test error after re-estimating the BN statistics on the training
set with the noise switched off (the remedy "recompute the statistics").
"""

from __future__ import annotations

import torch

from dropkit_lab.engine.model import MLPConfig
from dropkit_lab.engine.trainer import evaluate
from dropkit_lab.experiments.base import Experiment, RunSpec, fmt_mean_std, mean_std
from dropkit_lab.experiments.common import (
    available,
    check,
    missing_methods_note,
    mnist_run,
    seed_list,
)
from dropkit_lab.experiments.paper_values import CLAIMS, LI_2019

GROUPS = {
    "BN, no dropout": {"method": "none"},
    "dropout before BN": {"method": "dropout", "hidden_p": 0.5},
    "dropout after last BN only": {"method": "dropout", "hidden_p": 0.5, "hidden_noise_on": "last"},
    "Gaussian dropout before BN": {"method": "gaussian", "hidden_p": 0.5},
}
SLUG = {
    "BN, no dropout": "none",
    "dropout before BN": "before",
    "dropout after last BN only": "last",
    "Gaussian dropout before BN": "gauss",
}
PROFILES = {
    "smoke": {"train_size": 500, "test_size": 500, "width": 32, "epochs": 2, "ramp": 2},
    "quick": {"train_size": 5000, "test_size": None, "width": 256, "epochs": 20, "ramp": 5},
    "paper": {"train_size": None, "test_size": None, "width": 1024, "epochs": 200, "ramp": 50},
}


@torch.no_grad()
def variance_shift(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """Per BN layer: mean over units of Var(its input on ``x``, eval mode) / running_var."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        bn.register_forward_hook(lambda mod, inp, out, i=i: captured.__setitem__(i, inp[0]))
        for i, bn in enumerate(bns)
    ]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [
        float((captured[i].var(dim=0, unbiased=True) / bn.running_var.clamp_min(1e-12)).mean())
        for i, bn in enumerate(bns)
    ]


@torch.no_grad()
def recompute_bn_error(model: torch.nn.Module, data, batch: int = 500) -> float:
    """Test error after re-estimating every BN's statistics on the training set, noise off."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    saved = [(bn.momentum, bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
        bn.train()
    for start in range(0, len(data.train_y), batch):
        model(data.train_x[start : start + batch])
    error = evaluate(model, data.test_x, data.test_y) / len(data.test_y)
    for bn, (momentum, mean, var) in zip(bns, saved):
        bn.momentum = momentum
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return error


class BnVarianceShift(Experiment):
    name = "bn-variance-shift"
    title = "Dropout before BatchNorm: variance shift and its cost, beside the remedies"
    paper = LI_2019
    default_seeds = {"smoke": 1, "quick": 3, "paper": 3}

    def runs(self, profile: str, seeds: int) -> list[RunSpec]:
        cfg = PROFILES[profile]
        specs = []
        for group, kw in GROUPS.items():
            if not available(kw["method"]):
                continue
            w = cfg["width"]
            model = MLPConfig(784, (w, w, w), 10, batchnorm=True, **kw)
            for seed in seed_list(seeds):
                specs.append(mnist_run(cfg, f"{SLUG[group]}-s{seed}", group, seed, model, lr=1.0))
        return specs

    def measure(self, spec: RunSpec, result, data) -> dict:
        return {
            "variance_shift": variance_shift(result.model, data.test_x),
            "error_bn_recomputed": recompute_bn_error(result.model, data),
        }

    def summarize(self, profile: str, results: list[dict]) -> dict:
        groups = self.by_group(results)
        rows, shift_means, error_means = [], {}, {}
        for group in GROUPS:
            runs = groups.get(group)
            if not runs:
                continue
            shifts = [r["measures"]["variance_shift"] for r in runs]
            per_layer = [
                fmt_mean_std([s[i] for s in shifts], 1.0, 3) for i in range(len(shifts[0]))
            ]
            errors = [r["test_error"] for r in runs]
            fixed = [r["measures"]["error_bn_recomputed"] for r in runs]
            shift_means[group] = mean_std([abs(1 - s[-1]) for s in shifts])[0]
            error_means[group] = mean_std(errors)[0]
            rows.append(
                [
                    group,
                    *per_layer,
                    fmt_mean_std(errors, 100.0),
                    fmt_mean_std(fixed, 100.0),
                    len(runs),
                ]
            )
        n_bn = len(results[0]["measures"]["variance_shift"])
        table = {
            "title": "Variance shift Var_test/Var_train per BN layer (1 = none) and test error",
            "columns": [
                "configuration",
                *[f"BN{i + 1}" for i in range(n_bn)],
                "test error (%)",
                "after recomputing BN stats (%)",
                "seeds",
            ],
            "rows": rows,
        }
        checks = []
        if "dropout before BN" in shift_means:
            base = shift_means["dropout before BN"]
            for remedy in (
                "dropout after last BN only",
                "Gaussian dropout before BN",
                "BN, no dropout",
            ):
                if remedy in shift_means:
                    checks.append(
                        check(
                            f"last-BN variance shift: '{remedy}' below dropout before BN",
                            shift_means[remedy] < base,
                            f"|1 - ratio| {shift_means[remedy]:.3f} vs {base:.3f}",
                        )
                    )
            if "dropout after last BN only" in error_means:
                checks.append(
                    check(
                        "dropout after the last BN only: lower test error than dropout before BN",
                        error_means["dropout after last BN only"]
                        < error_means["dropout before BN"],
                        f"{100 * error_means['dropout after last BN only']:.2f}% vs "
                        f"{100 * error_means['dropout before BN']:.2f}%",
                    )
                )
        notes = missing_methods_note(["gaussian"]) + [CLAIMS["bn-variance-shift"]]
        notes.append(
            "Gaussian dropout N(1, p/(1-p)) has the same noise variance as Bernoulli dropout at "
            "the same p, so by Li et al.'s analysis (the shift depends on the noise variance) it "
            "shifts BN's variance as much; it is a remedy only at a smaller noise variance."
        )
        notes.append(
            "Li et al. measure on convolutional nets (CIFAR, ImageNet); this MLP check has no "
            "published number to compare with."
        )
        return {"tables": [table], "checks": checks, "notes": notes, "comparable": None}
