"""A small, readable trainer for the MLP experiments of the dropout papers."""

from dropkit_lab.engine.model import METHODS, MLP, MLPConfig, build_mlp
from dropkit_lab.engine.optim import HintonSGD, Schedule, apply_max_norm
from dropkit_lab.engine.progress import make_progress
from dropkit_lab.engine.trainer import TrainConfig, TrainResult, evaluate, mc_errors, train

__all__ = [
    "METHODS",
    "MLP",
    "HintonSGD",
    "MLPConfig",
    "Schedule",
    "TrainConfig",
    "TrainResult",
    "apply_max_norm",
    "build_mlp",
    "evaluate",
    "make_progress",
    "mc_errors",
    "train",
]
