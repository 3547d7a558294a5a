"""What an experiment is: a set of independent training runs, per-run measurements, a summary.

An :class:`Experiment` lists its :class:`RunSpec` for a profile (``smoke``: seconds, a tiny subset,
what CI runs; ``quick``: at most about 10 minutes on 2 CPU cores, designed to show the paper's
effect; ``paper``: the published recipe, hours) and a number of seeds; the runner trains each spec
(possibly in parallel worker processes), calls :meth:`Experiment.measure` on the trained model,
stores one JSON per run, then calls :meth:`Experiment.summarize` on all of them. The summary holds
tables (paper value beside measured mean ± std over seeds), plots, checks of the paper's claims
and notes, and is what :mod:`dropkit_lab.report` renders.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from dropkit_lab.data.dataset import Dataset
from dropkit_lab.engine.model import MLPConfig
from dropkit_lab.engine.trainer import TrainConfig, TrainResult
from dropkit_lab.text import plural

__all__ = ["PROFILES", "Experiment", "RunSpec", "mean_std", "fmt_mean_std"]

PROFILES = ("smoke", "quick", "paper")
#: Training and test examples of each dataset in full (for the cost of a run).
DATASET_SIZES = {"digits": (1297, 500), "mnist": (60000, 10000), "fashion-mnist": (60000, 10000)}


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``run_id`` is unique within the experiment and profile (a file name);
    ``group`` is the row it belongs to in the tables; ``params`` its coordinates in a sweep."""

    run_id: str
    group: str
    seed: int
    dataset: str
    model: MLPConfig
    train: TrainConfig
    train_size: int | None = None
    test_size: int | None = None
    params: dict = field(default_factory=dict)

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(in, out) of every weight matrix of the net."""
        sizes = [self.model.in_features, *self.model.widths, self.model.num_classes]
        return list(zip(sizes[:-1], sizes[1:]))

    def work(self) -> int:
        """Multiply-adds of the whole run: forward and backward (about 3 forward passes) over the
        training set every epoch, a forward pass over the test set at every evaluation. The
        runner divides training time by it to learn this machine's speed."""
        n_train, n_test = DATASET_SIZES[self.dataset]
        n_train = self.train_size or n_train
        n_test = self.test_size or n_test
        per_example = sum(i * o for i, o in self.layer_sizes())
        evaluations = self.train.epochs // self.train.eval_every + 1
        return per_example * (3 * n_train * self.train.epochs + n_test * evaluations)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "group": self.group,
            "seed": self.seed,
            "dataset": self.dataset,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "params": dict(self.params),
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
        }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt_mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean, std = mean_std([v * scale for v in values])
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


class Experiment:
    """Base class; subclasses set the attributes and implement :meth:`runs` and
    :meth:`summarize` (and :meth:`measure` when they need more than the test error)."""

    name: str = ""
    title: str = ""
    paper: str = ""
    dataset: str = "mnist"
    default_seeds: dict[str, int] = {"smoke": 1, "quick": 3, "paper": 3}
    #: Profiles beyond the common three that this experiment offers (e.g. ``full``).
    extra_profiles: tuple[str, ...] = ()

    @property
    def profiles(self) -> tuple[str, ...]:
        return PROFILES + self.extra_profiles

    def runs(self, profile: str, seeds: int) -> list[RunSpec]:
        raise NotImplementedError

    def measure(self, spec: RunSpec, result: TrainResult, data: Dataset) -> dict:
        """Extra measurements on the trained model (JSON-able); default: none."""
        return {}

    def summarize(self, profile: str, results: list[dict]) -> dict:
        raise NotImplementedError

    def paper_errors(self) -> dict[str, float]:
        """The published test error (%) of each group that has one (drawn as a line in the
        learning-curve plot); default: none."""
        return {}

    def preamble(self) -> dict | None:
        """An optional table shown before training starts (the demo's dropout comparison)."""
        return None

    # Helpers shared by the experiments.

    @staticmethod
    def by_group(results: list[dict]) -> dict[str, list[dict]]:
        groups: dict[str, list[dict]] = {}
        for r in sorted(results, key=lambda r: r["spec"]["run_id"]):
            groups.setdefault(r["spec"]["group"], []).append(r)
        return groups

    @staticmethod
    def seeds_line(results: list[dict]) -> str:
        seeds = sorted({r["spec"]["seed"] for r in results})
        return f"{plural(len(seeds), 'seed')}: {', '.join(map(str, seeds))}"
