"""``features``: first-layer features and hidden-activation sparsity with and without dropout
(Srivastava et al. 2014, figures 7 and 8).

The paper shows an autoencoder's features; this experiment uses the classifier the rest of the
runner trains (784-256-10 ReLU on MNIST, 50% hidden dropout or none) and reports: the first-layer
weight vectors of 64 hidden units as 28x28 images, the mean activation of the hidden units over the
test set, the fraction of activations that are exactly zero, and the histogram of activations.
"""

from __future__ import annotations

import torch

from dropkit_lab.engine.model import MLPConfig
from dropkit_lab.experiments.base import Experiment, RunSpec, fmt_mean_std, mean_std
from dropkit_lab.experiments.common import check, mnist_run, seed_list
from dropkit_lab.experiments.paper_values import CLAIMS, SRIVASTAVA_2014

GROUPS = {"no dropout": {"method": "none"}, "dropout 50%": {"method": "dropout", "hidden_p": 0.5}}
SLUG = {"no dropout": "none", "dropout 50%": "dropout"}
PROFILES = {
    "smoke": {"train_size": 500, "test_size": 500, "width": 64, "epochs": 2, "ramp": 2},
    "quick": {"train_size": 10000, "test_size": None, "width": 256, "epochs": 30, "ramp": 10},
    "paper": {"train_size": None, "test_size": None, "width": 256, "epochs": 500, "ramp": 100},
}
TILES = 64
BINS = [0.0, 1e-6, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, float("inf")]


class Features(Experiment):
    name = "features"
    title = "First-layer features and hidden-activation sparsity with and without dropout"
    paper = f"{SRIVASTAVA_2014}, figures 7 and 8"
    default_seeds = {"smoke": 1, "quick": 2, "paper": 3}

    def runs(self, profile: str, seeds: int) -> list[RunSpec]:
        cfg = PROFILES[profile]
        specs = []
        for group, kw in GROUPS.items():
            model = MLPConfig(784, (cfg["width"],), 10, **kw)
            for seed in seed_list(seeds):
                specs.append(mnist_run(cfg, f"{SLUG[group]}-s{seed}", group, seed, model, lr=1.0))
        return specs

    @torch.no_grad()
    def measure(self, spec: RunSpec, result, data) -> dict:
        model = result.model.eval()
        (hidden,) = model.hidden(data.test_x)
        edges = torch.tensor(BINS[1:-1])
        counts = torch.bincount(torch.bucketize(hidden.flatten(), edges), minlength=len(BINS) - 1)
        weights = model.hidden_weights()[0][:TILES].detach()
        return {
            "mean_activation": float(hidden.mean()),
            "zero_fraction": float((hidden == 0).float().mean()),
            "histogram": (counts.double() / hidden.numel()).tolist(),
            "tiles": [[round(float(v), 4) for v in row] for row in weights],
        }

    def summarize(self, profile: str, results: list[dict]) -> dict:
        groups = self.by_group(results)
        rows, means, images, series = [], {}, [], []
        labels = [f"[{BINS[i]:g}, {BINS[i + 1]:g})" for i in range(len(BINS) - 1)]
        for group in GROUPS:
            runs = groups.get(group)
            if not runs:
                continue
            act = [r["measures"]["mean_activation"] for r in runs]
            zero = [r["measures"]["zero_fraction"] for r in runs]
            means[group] = (mean_std(act)[0], mean_std(zero)[0])
            rows.append(
                [
                    group,
                    fmt_mean_std(act, 1.0, 3),
                    fmt_mean_std(zero, 100.0, 1),
                    fmt_mean_std([r["test_error"] for r in runs], 100.0),
                    len(runs),
                ]
            )
            images.append(
                {
                    "name": f"features-{SLUG[group]}",
                    "title": (
                        f"First-layer features, {group} (seed {runs[0]['spec']['seed']}): "
                        f"{TILES} hidden units"
                    ),
                    "xlabel": "each tile: one hidden unit's 784 input weights as a 28x28 image",
                    "tiles": runs[0]["measures"]["tiles"],
                    "tile_shape": [28, 28],
                }
            )
            hist = [
                mean_std([r["measures"]["histogram"][i] for r in runs])[0]
                for i in range(len(labels))
            ]
            series.append({"label": group, "x": list(range(len(labels))), "y": hist})
        table = {
            "title": "Hidden activations on the test set",
            "columns": [
                "configuration",
                "mean activation",
                "exactly zero (%)",
                "test error (%)",
                "seeds",
            ],
            "rows": rows,
        }
        plot = {
            "name": "activation-histogram",
            "title": "Histogram of hidden activations on the test set",
            "xlabel": "hidden activation (bin)",
            "ylabel": "fraction of activations",
            "xticklabels": labels,
            "series": series,
        }
        checks = []
        if len(means) == 2:
            (a0, z0), (a1, z1) = means["no dropout"], means["dropout 50%"]
            checks.append(
                check("dropout lowers the mean hidden activation", a1 < a0, f"{a1:.3f} vs {a0:.3f}")
            )
            checks.append(
                check(
                    "dropout makes more activations exactly zero (sparser)",
                    z1 > z0,
                    f"{100 * z1:.1f}% vs {100 * z0:.1f}%",
                )
            )
        notes = [
            CLAIMS["features"],
            "deviation: a 784-256-10 classifier, not the paper's autoencoder.",
        ]
        return {
            "tables": [table],
            "plots": [plot],
            "images": images,
            "checks": checks,
            "notes": notes,
            "comparable": None,
        }
