"""What the compat layers share: argument checks (the peers' accepted types, clear messages) and
the module base."""

from __future__ import annotations

import numbers

import torch

from dropkit.nn._base import StochasticModule


def real(value: object, name: str) -> float:
    """``value`` as a float: Python/NumPy real numbers (bools included, as the peers compare them
    as numbers) and one-element real tensors; TypeError naming ``name`` otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(
                f"{name} must be a real number or a one-element real tensor, got a {value.dtype} "
                f"tensor of shape {tuple(value.shape)}"
            )
        return float(value.item())
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def block_size(value: object) -> int:
    """``block_size`` as an int >= 1 (Python/NumPy integers, not bools)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"block_size must be an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {value}")
    return int(value)


class PeerModule(StochasticModule):
    """dropkit's per-layer randomness (``generator=``/``seed=``), printed under the peer's bare
    class name: a drop-in shows exactly as the layer it replaces (plus ``seed=`` when set)."""

    def _get_name(self) -> str:
        return type(self).__name__
