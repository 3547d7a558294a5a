"""What ``dropkit list`` and ``dropkit run --help`` show, without importing torch.

The experiments (:mod:`dropkit_lab.experiments`) are the one declaration of each experiment's
title, profiles, default seeds and runs. ``catalogue.json`` beside this module is generated from
them (``python -m dropkit_lab.catalogue`` rewrites it; ``tests/lab/test_cli.py`` fails, naming
that command, when it is stale): per experiment its title and default seeds, per profile the
number of runs at the default seeds, their work (multiply-adds,
:meth:`dropkit_lab.experiments.RunSpec.work`) and their size class (``small``: the largest matmul
of a step is below :data:`dropkit_lab.engine.threads.SMALL_WORK`). Nothing in it is typed by hand.

Estimates divide that work by the speed the runner measured on this machine (see
:func:`measured_speeds`), with the spread of those measurements as their uncertainty; before any
measurement, by the speed of a reference machine, with a wide uncertainty.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

from dropkit_lab.environment import speed_file

__all__ = [
    "CATALOGUE",
    "EXPERIMENTS",
    "REFERENCE_SPEED",
    "Entry",
    "build",
    "estimate",
    "estimate_seconds",
    "measured_speeds",
]

CATALOGUE = Path(__file__).with_name("catalogue.json")


class Entry(NamedTuple):
    title: str
    default_seeds: dict[str, int]
    #: profile -> (runs at the default seeds, multiply-adds in all, "small" or "large")
    profiles: dict[str, tuple[int, float, str]]


class Speed(NamedTuple):
    """Multiply-adds per second of one size class, and its relative uncertainty."""

    rate: float
    spread: float
    measured: bool


#: Speed (multiply-adds per second, training and measuring) on the 2-core machine dropkit is
#: developed on: small nets about 2.5e9, the 784-800-800-10 net about 7.5e10. Used, with a
#: relative uncertainty of :data:`REFERENCE_SPREAD`, until a run here measured this machine's.
REFERENCE_SPEED = {"small": 2.5e9, "large": 7.5e10}
REFERENCE_SPREAD = 0.5
#: The least relative uncertainty claimed for measured speeds (one run; load changes).
MIN_SPREAD = 0.1


def _load(path: Path = CATALOGUE) -> dict[str, Entry]:
    data = json.loads(path.read_text())
    return {
        name: Entry(
            e["title"],
            dict(e["default_seeds"]),
            {
                p: (v["runs"], float(v["multiply_adds"]), v["size"])
                for p, v in e["profiles"].items()
            },
        )
        for name, e in data.items()
    }


EXPERIMENTS: dict[str, Entry] = _load()


def build() -> dict:
    """The catalogue as the experiments define it now (imports them, and torch)."""
    from dropkit_lab.engine.threads import SMALL_WORK, step_work
    from dropkit_lab.experiments import list_experiments

    catalogue = {}
    for e in list_experiments():
        profiles = {}
        for profile in e.profiles:
            specs = e.runs(profile, e.default_seeds[profile])
            big = max(step_work(s.train.batch_size, s.layer_sizes()) for s in specs)
            profiles[profile] = {
                "runs": len(specs),
                "multiply_adds": sum(s.work() for s in specs),
                "size": "small" if big < SMALL_WORK else "large",
            }
        catalogue[e.name] = {
            "title": e.title,
            "default_seeds": dict(e.default_seeds),
            "profiles": profiles,
        }
    return catalogue


def render(catalogue: dict) -> str:
    return json.dumps(catalogue, indent=1) + "\n"


def measured_speeds() -> dict[str, Speed]:
    """The speeds the runner measured on this machine (``speed.json`` in dropkit's cache folder,
    see :func:`dropkit_lab.environment.speed_file`); empty when none yet or unreadable."""
    try:
        data = json.loads(speed_file().read_text())
        speeds = {}
        for size, entry in data.items():
            if size not in REFERENCE_SPEED:
                continue
            samples = [float(s) for s in entry.get("samples", [])] or [
                float(entry["multiply_adds_per_second"])
            ]
            samples = [s for s in samples if math.isfinite(s) and s > 0]
            if not samples:
                continue
            rate = statistics.median(samples)
            spread = statistics.stdev(samples) / rate if len(samples) > 1 else 3 * MIN_SPREAD
            speeds[size] = Speed(rate, max(spread, MIN_SPREAD), True)
        return speeds
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def estimate(work: float, size: str, speeds: dict[str, Speed]) -> tuple[float, float]:
    """Seconds that ``work`` multiply-adds of ``size`` take here, and their uncertainty."""
    speed = speeds.get(size) or Speed(REFERENCE_SPEED[size], REFERENCE_SPREAD, False)
    seconds = work / speed.rate
    return seconds, seconds * speed.spread


def estimate_seconds(work: float, size: str, speeds: dict[str, Speed]) -> float:
    return estimate(work, size, speeds)[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m dropkit_lab.catalogue [--check]``: rewrite (or check) ``catalogue.json``."""
    argv = sys.argv[1:] if argv is None else argv
    text = render(build())
    if argv == ["--check"]:
        if CATALOGUE.read_text() != text:
            print(f"{CATALOGUE} is stale: run python -m dropkit_lab.catalogue", file=sys.stderr)
            return 1
        return 0
    CATALOGUE.write_text(text)
    print(f"wrote {CATALOGUE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
