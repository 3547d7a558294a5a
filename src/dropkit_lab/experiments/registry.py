"""The experiments by name (``dropkit list`` prints them in this order)."""

from __future__ import annotations

from dropkit_lab.experiments.base import Experiment

__all__ = ["get_experiment", "list_experiments"]


def _all() -> dict[str, Experiment]:
    from dropkit_lab.experiments.bn_variance_shift import BnVarianceShift
    from dropkit_lab.experiments.demo import Demo
    from dropkit_lab.experiments.dropconnect import DropConnectExperiment
    from dropkit_lab.experiments.features import Features
    from dropkit_lab.experiments.hinton2012_mnist import Hinton2012Mnist
    from dropkit_lab.experiments.mc_vs_scaling import McVsScaling
    from dropkit_lab.experiments.p_sweep import PSweep
    from dropkit_lab.experiments.srivastava2014_table2 import Srivastava2014Table2

    experiments = [
        Demo(),
        Hinton2012Mnist(),
        McVsScaling(),
        PSweep(),
        DropConnectExperiment(),
        BnVarianceShift(),
        Srivastava2014Table2(),
        Features(),
    ]
    return {e.name: e for e in experiments}


def list_experiments() -> list[Experiment]:
    return list(_all().values())


def get_experiment(name: str) -> Experiment:
    experiments = _all()
    if name not in experiments:
        raise KeyError(f"unknown experiment {name!r}; choose one of: {', '.join(experiments)}")
    return experiments[name]
