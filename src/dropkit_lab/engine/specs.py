"""Plain-dict (JSON) forms of the engine's configs, and a digest of a model's weights."""

from __future__ import annotations

import hashlib

import torch

from dropkit_lab.engine.model import MLPConfig
from dropkit_lab.engine.optim import Schedule
from dropkit_lab.engine.trainer import TrainConfig

__all__ = ["model_config_from_dict", "train_config_from_dict", "weights_digest"]


def model_config_from_dict(d: dict) -> MLPConfig:
    d = dict(d)
    d["widths"] = tuple(d["widths"])
    return MLPConfig(**d)


def train_config_from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    d["schedule"] = Schedule(**d["schedule"])
    return TrainConfig(**d)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer, in state-dict order: equal iff bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
