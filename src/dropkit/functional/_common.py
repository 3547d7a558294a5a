"""What the dropout-style functionals share: mode handling, scale, evaluation output."""

from __future__ import annotations

import torch

from dropkit import _state
from dropkit.ops.checks import check_choice

MODES = ("inverted", "classic")


def check_mode(mode: str, op: str = "dropout") -> str:
    return check_choice(mode, "mode", MODES, op=op)


def keep_scale(p: float, mode: str) -> float:
    """The survivors' factor: ``1/(1-p)`` inverted (0 at ``p = 1``), 1 classic."""
    if mode == "classic":
        return 1.0
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def passes_through(input: torch.Tensor, p: float, training: bool) -> bool:
    """Whether no mask is drawn: evaluation outside Monte-Carlo, ``p = 0`` or an empty input."""
    return not _state.is_stochastic(training) or p == 0.0 or input.numel() == 0


def eval_output(input: torch.Tensor, p: float, mode: str, inplace: bool) -> torch.Tensor:
    """Evaluation: the identity (inverted) or the mean network ``x (1-p)`` (classic)."""
    if mode == "inverted" or p == 0.0:
        return input
    return input.mul_(1.0 - p) if inplace else input * (1.0 - p)
