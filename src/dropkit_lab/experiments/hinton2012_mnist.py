"""``hinton2012-mnist``: 784-800-800-10 on MNIST without dropout, with 50% hidden dropout, and with
20% input + 50% hidden dropout (Hinton et al. 2012, figure 1).

Recipe (Hinton et al. 2012, appendix A, as stated in the issue): mini-batches of 100,
cross-entropy, momentum rising linearly 0.5 -> 0.99 over the first 500 epochs then held, the step
scaled by (1 - m), learning rate multiplied by 0.998 after every epoch, the squared length of each
hidden unit's incoming weights capped at 15, N(0, 0.01^2) weights, 3000 epochs.

The published learning rate of 10 does not train here: with the mean cross-entropy of a batch of
100 it sends the net to chance level within the first epochs (measured on a 10,000-image subset:
about 90% test error after 8 epochs, ReLU or logistic units, with or without max-norm on the output
layer too). Both dropout nets therefore use learning rate 1.0; every other part of the recipe is
as published. The no-dropout baseline gets its own explicit setting: learning rate 1.0 and no
max-norm (the paper's 160 errors are the best published plain-backprop result, not this recipe).
"""

from __future__ import annotations

from dropkit_lab.engine.model import MLPConfig
from dropkit_lab.experiments.base import Experiment, RunSpec
from dropkit_lab.experiments.common import check, error_table, group_means, mnist_run, seed_list
from dropkit_lab.experiments.paper_values import HINTON_2012, HINTON_2012_MNIST_ERRORS

GROUPS = {
    "no dropout": {"method": "none"},
    "50% hidden": {"method": "dropout", "hidden_p": 0.5},
    "20% input + 50% hidden": {"method": "dropout", "input_p": 0.2, "hidden_p": 0.5},
}
SLUG = {"no dropout": "none", "50% hidden": "h50", "20% input + 50% hidden": "i20-h50"}

PROFILES = {
    "smoke": {"train_size": 500, "test_size": 1000, "widths": (64, 64), "epochs": 2, "ramp": 2},
    # Dropout needs long schedules: after 40 epochs on 10,000 images the dropout nets still had
    # more test errors than the baseline (356 and 342 vs 311). On 2,000 images the baseline
    # overfits within the profile's time and dropout's gain shows (Srivastava 2014, figure 10).
    "quick": {
        "train_size": 2000,
        "test_size": None,
        "widths": (800, 800),
        "epochs": 100,
        "ramp": 10,
        "eval_every": 10,  # a test pass over 10,000 images costs as much as a training epoch
    },
    # All 60,000 training images and the full test set with the published recipe, for as many
    # epochs as let the three configurations finish in about an hour on 2 CPU cores (about 3 s
    # per epoch without dropout and 3.1-3.5 s with, measured here); the momentum ramp keeps the
    # paper's proportion (500 of 3000 epochs).
    "full": {
        "train_size": None,
        "test_size": None,
        "widths": (800, 800),
        "epochs": 250,
        "ramp": 42,
        "eval_every": 5,
    },
    "paper": {
        "train_size": None,
        "test_size": None,
        "widths": (800, 800),
        "epochs": 3000,
        "ramp": 500,
    },
}
DROPOUT_LR = 1.0
BASELINE = {"lr": 1.0, "max_norm": None}


class Hinton2012Mnist(Experiment):
    name = "hinton2012-mnist"
    title = "784-800-800-10 on MNIST: no dropout vs 50% hidden vs 20% input + 50% hidden"
    paper = f"{HINTON_2012}, figure 1"
    default_seeds = {"smoke": 1, "quick": 3, "full": 1, "paper": 3}
    extra_profiles = ("full",)

    def paper_errors(self) -> dict[str, float]:
        # Errors out of the 10,000 test images, as a percentage.
        return {group: ref["value"] / 100 for group, ref in HINTON_2012_MNIST_ERRORS.items()}

    def runs(self, profile: str, seeds: int) -> list[RunSpec]:
        cfg = PROFILES[profile]
        specs = []
        for group, kw in GROUPS.items():
            for seed in seed_list(seeds):
                model = MLPConfig(784, cfg["widths"], 10, **kw)
                opt = BASELINE if kw["method"] == "none" else {"lr": DROPOUT_LR}
                specs.append(mnist_run(cfg, f"{SLUG[group]}-s{seed}", group, seed, model, **opt))
        return specs

    def summarize(self, profile: str, results: list[dict]) -> dict:
        groups = self.by_group(results)
        groups = {g: groups[g] for g in GROUPS if g in groups}
        means = group_means(groups)
        cfg = PROFILES[profile]
        table = error_table(
            "Test errors out of 10,000 (MNIST test set)"
            if cfg["test_size"] is None
            else f"Test errors per 10,000 (first {cfg['test_size']} of a fixed test shuffle)",
            groups,
            HINTON_2012_MNIST_ERRORS,
            unit="errors",
            paper_unit="errors",
        )
        checks = [
            check(
                "50% hidden dropout beats no dropout",
                means["50% hidden"] < means["no dropout"],
                f"{1e4 * means['50% hidden']:.0f} vs {1e4 * means['no dropout']:.0f} errors",
            ),
            check(
                "20% input + 50% hidden beats 50% hidden only",
                means["20% input + 50% hidden"] < means["50% hidden"],
                f"{1e4 * means['20% input + 50% hidden']:.0f} vs "
                f"{1e4 * means['50% hidden']:.0f} errors",
            ),
        ]
        n_train = cfg["train_size"] or 60000
        notes = [
            f"this profile: {n_train:,} training images, widths {cfg['widths']}, {cfg['epochs']} "
            f"epochs, momentum ramp over {cfg['ramp']} epochs; dropout nets learning rate "
            f"{DROPOUT_LR} (the published 10 collapses to chance here, see the module docstring), "
            f"baseline learning rate {BASELINE['lr']} without max-norm.",
        ]
        if profile == "full":
            notes.append(
                f"the full data with the published recipe but {cfg['epochs']} of the published "
                f"3000 epochs (momentum ramp over {cfg['ramp']} epochs, the paper's proportion), "
                "so the errors sit above the paper's; the ordering is what compares."
            )
        elif profile != "paper":
            notes.append(
                f"not comparable with the paper's numbers: {n_train:,} of the 60,000 training "
                f"images and {cfg['epochs']} of the published 3000 epochs; it shows the direction "
                "of the effect only."
            )
        return {
            "tables": [table],
            "checks": checks,
            "notes": notes,
            "comparable": profile == "paper",
        }
