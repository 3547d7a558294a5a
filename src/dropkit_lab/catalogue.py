"""What ``dropkit list`` and ``dropkit run --help`` show, without importing torch: each
experiment's title, profiles, default seeds, and per profile the number of runs, their work
(multiply-adds, :meth:`dropkit.experiments.RunSpec.work`) and their size class (``small``: the
largest matmul of a step is below :data:`dropkit.engine.threads.SMALL_WORK`).

The experiments themselves define these; ``tests/test_cli.py`` checks that this table matches
them (regenerate it with the snippet in that test when an experiment changes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["EXPERIMENTS", "REFERENCE_SPEED", "Entry", "estimate_seconds", "measured_speeds"]


class Entry(NamedTuple):
    title: str
    default_seeds: dict[str, int]
    #: profile -> (runs at the default seeds, multiply-adds in all, "small" or "large")
    profiles: dict[str, tuple[int, float, str]]


#: Training speed (multiply-adds per second) on the 2-core machine dropkit is developed on:
#: ``dropkit run demo --seeds 1`` took 60 s for 1.49e11 (small nets); the 784-800-800-10 net
#: about 3 s per epoch of 2.3e11 (large). Used until a run on this machine measured its own.
REFERENCE_SPEED = {"small": 2.5e9, "large": 7.5e10}

EXPERIMENTS: dict[str, Entry] = {
    "demo": Entry(
        "No dropout vs dropout vs Gaussian dropout vs DropConnect on the embedded digits",
        {"smoke": 1, "quick": 3, "paper": 10},
        {
            "smoke": (4, 166000000.0, "small"),
            "quick": (12, 446000000000.0, "small"),
            "paper": (40, 4450000000000.0, "small"),
        },
    ),
    "hinton2012-mnist": Entry(
        "784-800-800-10 on MNIST: no dropout vs 50% hidden vs 20% input + 50% hidden",
        {"smoke": 1, "quick": 3, "full": 1, "paper": 3},
        {
            "smoke": (3, 988000000.0, "small"),
            "quick": (9, 8150000000000.0, "large"),
            "paper": (9, 6540000000000000.0, "large"),
            "full": (3, 174000000000000.0, "large"),
        },
    ),
    "mc-vs-scaling": Entry(
        "Monte-Carlo averaging over k sampled nets vs the weight-scaling rule",
        {"smoke": 1, "quick": 3, "paper": 3},
        {
            "smoke": (1, 247000000.0, "small"),
            "quick": (3, 4630000000000.0, "large"),
            "paper": (3, 4980000000000000.0, "large"),
        },
    ),
    "p-sweep": Entry(
        "Test error against the dropout probability, at fixed width and at fixed kept width",
        {"smoke": 1, "quick": 2, "paper": 3},
        {
            "smoke": (6, 653000000.0, "small"),
            "quick": (28, 5930000000000.0, "large"),
            "paper": (81, 1.97e17, "large"),
        },
    ),
    "dropconnect": Entry(
        "No-Drop vs dropout vs DropConnect (weight scaling and moment matching)",
        {"smoke": 1, "quick": 3, "paper": 5},
        {
            "smoke": (3, 357000000.0, "small"),
            "quick": (9, 8150000000000.0, "large"),
            "paper": (15, 3630000000000000.0, "large"),
        },
    ),
    "bn-variance-shift": Entry(
        "Dropout before BatchNorm: variance shift and its cost, beside the remedies",
        {"smoke": 1, "quick": 3, "paper": 3},
        {
            "smoke": (4, 494000000.0, "small"),
            "quick": (12, 2050000000000.0, "large"),
            "paper": (12, 1330000000000000.0, "large"),
        },
    ),
    "srivastava2014-table2": Entry(
        "Plain-MLP rows of Srivastava et al. 2014, table 2 (MNIST)",
        {"smoke": 1, "quick": 2, "paper": 3},
        {
            "smoke": (5, 728000000.0, "small"),
            "quick": (10, 3030000000000.0, "large"),
            "paper": (21, 1.94e17, "large"),
        },
    ),
    "features": Entry(
        "First-layer features and hidden-activation sparsity with and without dropout",
        {"smoke": 1, "quick": 2, "paper": 3},
        {
            "smoke": (2, 457000000.0, "small"),
            "quick": (4, 984000000000.0, "large"),
            "paper": (6, 116000000000000.0, "large"),
        },
    ),
}


def measured_speeds() -> dict[str, float]:
    """The speeds the runner measured on this machine (see
    :func:`dropkit.experiments.runner.speed_file`); empty when none yet or unreadable."""
    path = Path(os.environ.get("DROPKIT_CACHE") or "~/.cache/dropkit").expanduser() / "speed.json"
    try:
        data = json.loads(path.read_text())
        return {
            k: float(v["multiply_adds_per_second"]) for k, v in data.items() if k in REFERENCE_SPEED
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def estimate_seconds(work: float, size: str, speeds: dict[str, float]) -> float:
    return work / speeds.get(size, REFERENCE_SPEED[size])
