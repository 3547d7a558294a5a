"""A small, readable trainer for the MLP experiments of the dropout papers."""

from dropkit.engine.model import METHODS, MLP, MLPConfig, build_mlp
from dropkit.engine.optim import HintonSGD, Schedule, apply_max_norm
from dropkit.engine.progress import make_progress
from dropkit.engine.trainer import TrainConfig, TrainResult, evaluate, mc_errors, train

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
