"""Re-runs of the dropout papers' experiments; see :func:`run_experiment` and ``dropkit list``."""

from dropkit_lab.experiments.base import PROFILES, Experiment, RunSpec
from dropkit_lab.experiments.registry import get_experiment, list_experiments
from dropkit_lab.experiments.runner import run_experiment

__all__ = [
    "PROFILES",
    "Experiment",
    "RunSpec",
    "get_experiment",
    "list_experiments",
    "run_experiment",
]
