"""Pieces shared by the experiments: the papers' SGD recipe, method availability, summaries."""

from __future__ import annotations

import math

from dropkit_lab.engine.model import MLPConfig
from dropkit_lab.engine.optim import Schedule
from dropkit_lab.engine.trainer import TrainConfig
from dropkit_lab.experiments.base import RunSpec, fmt_mean_std, mean_std

__all__ = [
    "HINTON_MAX_NORM",
    "available",
    "error_table",
    "hinton_recipe",
    "missing_methods_note",
    "mnist_run",
    "seed_list",
]

#: Hinton et al. 2012 cap the *squared* length of each hidden unit's incoming weights at 15.
HINTON_MAX_NORM = math.sqrt(15.0)


def seed_list(seeds: int) -> list[int]:
    return list(range(seeds))


def hinton_recipe(
    epochs: int,
    seed: int,
    *,
    lr: float = 10.0,
    lr_decay: float = 0.998,
    momentum_start: float = 0.5,
    momentum_end: float = 0.99,
    momentum_epochs: int = 500,
    max_norm: float | None = HINTON_MAX_NORM,
    batch_size: int = 100,
    eval_every: int = 1,
) -> TrainConfig:
    """The 2012 MNIST recipe (the defaults), any part overridden
    (:mod:`dropkit_lab.engine.optim`)."""
    return TrainConfig(
        epochs=epochs,
        schedule=Schedule(lr, lr_decay, momentum_start, momentum_end, momentum_epochs),
        batch_size=batch_size,
        max_norm=max_norm,
        seed=seed,
        eval_every=eval_every,
    )


def mnist_run(
    profile: dict,
    run_id: str,
    group: str,
    seed: int,
    model: MLPConfig,
    params: dict | None = None,
    **recipe,
) -> RunSpec:
    """A run on MNIST with a profile's training and test-set sizes, epochs, momentum ramp and
    evaluation interval; ``recipe`` overrides the rest of :func:`hinton_recipe`."""
    train = hinton_recipe(
        profile["epochs"],
        seed,
        momentum_epochs=profile["ramp"],
        eval_every=profile.get("eval_every", 1),
        **recipe,
    )
    return RunSpec(
        run_id,
        group,
        seed,
        "mnist",
        model,
        train,
        profile["train_size"],
        profile["test_size"],
        params or {},
    )


def available(method: str) -> bool:
    """Whether dropkit in this build provides the layer a method needs."""
    from dropkit import nn as dnn

    needs = {"gaussian": "GaussianDropout", "dropconnect": "DropConnectLinear"}
    return method not in needs or hasattr(dnn, needs[method])


def missing_methods_note(methods: list[str]) -> list[str]:
    missing = [m for m in methods if not available(m)]
    if not missing:
        return []
    return [f"skipped (layer not available in this dropkit build): {', '.join(missing)}"]


def error_table(
    title: str,
    groups: dict[str, list[dict]],
    paper: dict[str, dict] | None = None,
    *,
    unit: str = "%",
    paper_unit: str = "%",
) -> dict:
    """A table of test error per group: measured mean ± std over seeds beside the paper's value.

    ``unit``/``paper_unit``: ``"%"`` (error rate) or ``"errors"`` (count per 10,000 test images).
    """
    columns = ["configuration", f"measured test error ({unit})", "seeds"]
    if paper is not None:
        columns.insert(1, f"paper ({paper_unit})")
    rows = []
    for group, runs in groups.items():
        errors = [r["test_error"] for r in runs]
        scale = 100.0 if unit == "%" else 10000.0
        row = [group, fmt_mean_std(errors, scale, 2 if unit == "%" else 0), len(runs)]
        if paper is not None:
            ref = paper.get(group)
            row.insert(1, "" if ref is None else _paper_cell(ref))
        rows.append(row)
    return {"title": title, "columns": columns, "rows": rows}


def _paper_cell(ref: dict) -> str:
    text = f"{ref['value']:g}"
    if "std" in ref:
        text += f" ± {ref['std']:g}"
    return text


def group_means(groups: dict[str, list[dict]], key: str = "test_error") -> dict[str, float]:
    return {g: mean_std([r[key] for r in runs])[0] for g, runs in groups.items()}


def check(claim: str, holds: bool | None, detail: str) -> dict:
    return {"claim": claim, "holds": holds, "detail": detail}
