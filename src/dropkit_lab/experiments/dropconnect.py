"""``dropconnect``: No-Drop vs dropout vs DropConnect, 784-800-800-10 ReLU MLP (Wan et al. 2013),
DropConnect evaluated both by weight scaling (the mean network) and by moment matching (a
Gaussian approximation of each unit's input, sampled ``Z`` times through the activation).

DropConnect drops each weight of both hidden layers with probability 0.5; dropout drops each
hidden unit with probability 0.5. All nets share the recipe of
:mod:`dropkit_lab.experiments.hinton2012_mnist` (learning rate 1.0, max-norm on hidden units;
No-Drop without max-norm). Deviation: one DropConnect mask per mini-batch, where Wan et al.
draw one per example; ``DropConnectLinear(per_sample=True)`` does that, at a cost that puts even
the quick profile out of reach on 2 cores (measured here: about 40x the per-batch mask at
800x800).
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
from dropkit_lab.experiments.paper_values import CLAIMS, WAN_2013, WAN_2013_MNIST_RELU

GROUPS = {
    "No-Drop": {"method": "none"},
    "Dropout": {"method": "dropout", "hidden_p": 0.5},
    "DropConnect": {"method": "dropconnect", "hidden_p": 0.5},
}
INFERENCE = ("weight_scaling", "moment_matching")
PROFILES = {
    "smoke": {
        "train_size": 500,
        "test_size": 500,
        "widths": (32, 32),
        "epochs": 2,
        "ramp": 2,
        "samples": 50,
    },
    # 2,000 images, so that No-Drop overfits within the profile's time (see hinton2012_mnist).
    "quick": {
        "train_size": 2000,
        "test_size": None,
        "widths": (800, 800),
        "epochs": 100,
        "ramp": 10,
        "samples": 200,
        "eval_every": 10,
    },
    "paper": {
        "train_size": None,
        "test_size": None,
        "widths": (800, 800),
        "epochs": 1000,
        "ramp": 100,
        "samples": 1000,
    },
}


def _set_inference(model: torch.nn.Module, mode: str) -> int:
    count = 0
    for module in model.modules():
        if type(module).__name__ == "DropConnectLinear":
            module.inference = mode
            count += 1
    return count


class DropConnectExperiment(Experiment):
    name = "dropconnect"
    title = "No-Drop vs dropout vs DropConnect (weight scaling and moment matching)"
    paper = f"{WAN_2013}, MNIST 2x800 ReLU"
    default_seeds = {"smoke": 1, "quick": 3, "paper": 5}

    def paper_errors(self) -> dict[str, float]:
        return {group: ref["value"] for group, ref in WAN_2013_MNIST_RELU.items()}

    def runs(self, profile: str, seeds: int) -> list[RunSpec]:
        cfg = PROFILES[profile]
        specs = []
        for group, kw in GROUPS.items():
            if not available(kw["method"]):
                continue
            model = MLPConfig(784, cfg["widths"], 10, dropconnect_samples=cfg["samples"], **kw)
            for seed in seed_list(seeds):
                opt = {"max_norm": None} if kw["method"] == "none" else {}
                specs.append(
                    mnist_run(cfg, f"{kw['method']}-s{seed}", group, seed, model, lr=1.0, **opt)
                )
        return specs

    def measure(self, spec: RunSpec, result, data) -> dict:
        if spec.model.method != "dropconnect":
            return {}
        out = {}
        for mode in INFERENCE:
            _set_inference(result.model, mode)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(2000 + spec.seed)
                out[mode] = evaluate(result.model, data.test_x, data.test_y) / len(data.test_y)
        _set_inference(result.model, spec.model.dropconnect_inference)
        return {"inference_error": out}

    def summarize(self, profile: str, results: list[dict]) -> dict:
        groups = self.by_group(results)
        rows, means = [], {}
        for group in GROUPS:
            runs = groups.get(group)
            if not runs:
                continue
            ref = WAN_2013_MNIST_RELU[group]
            paper = f"{ref['value']} ± {ref['std']}"
            if group == "DropConnect":
                for mode in INFERENCE:
                    errors = [r["measures"]["inference_error"][mode] for r in runs]
                    means[f"{group} ({mode})"] = mean_std(errors)[0]
                    rows.append(
                        [
                            f"{group} ({mode.replace('_', ' ')})",
                            paper,
                            fmt_mean_std(errors, 100.0),
                            len(runs),
                        ]
                    )
            else:
                errors = [r["test_error"] for r in runs]
                means[group] = mean_std(errors)[0]
                rows.append([group, paper, fmt_mean_std(errors, 100.0), len(runs)])
        table = {
            "title": "Test error (%)",
            "columns": ["model", "paper (%)", "measured (%)", "seeds"],
            "rows": rows,
        }
        checks = []
        for key, value in means.items():
            if key != "No-Drop" and "No-Drop" in means:
                checks.append(
                    check(
                        f"{key} beats No-Drop",
                        value < means["No-Drop"],
                        f"{100 * value:.2f}% vs {100 * means['No-Drop']:.2f}%",
                    )
                )
        notes = missing_methods_note(["dropconnect"]) + [CLAIMS["dropconnect"]]
        if profile != "paper":
            cfg = PROFILES[profile]
            notes.append(
                f"this profile: {cfg['train_size']} training images, widths {cfg['widths']}, "
                f"{cfg['epochs']} epochs: not comparable with the paper's numbers."
            )
        return {
            "tables": [table],
            "checks": checks,
            "notes": notes,
            "comparable": profile == "paper",
        }
