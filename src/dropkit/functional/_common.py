"""What the dropout-style functionals share: mode handling, scale, evaluation output."""

from __future__ import annotations

import math

import torch

from dropkit import _state, rng
from dropkit.ops import resolve_stream
from dropkit.ops.checks import (
    check_choice,
    check_floating,
    check_offset,
    check_probability,
)

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


def keep_inplace(input, seed, offset, threshold, scale, mask_shape) -> torch.Tensor:
    """``dropkit::keep_`` on ``input``; where autograd records the call, the out-of-place op and a
    ``copy_`` (an in-place operator with its own autograd kernel would save nothing more)."""
    if torch.is_grad_enabled() and input.requires_grad:
        return input.copy_(
            torch.ops.dropkit.keep(input, seed, offset, threshold, scale, mask_shape)
        )
    return torch.ops.dropkit.keep_(input, seed, offset, threshold, scale, mask_shape)


def keep_dropout(input, p, training, inplace, mask_shape, mode, generator, seed, offset, op):
    """Dropout with a mask over ``mask_shape`` (checked by the caller) broadcast over ``input``:
    the checks and the one operator call of every keep-and-scale method."""
    p = check_probability(p, op=op)
    check_mode(mode, op)
    check_offset(offset)
    if not _state.is_stochastic(training):
        return eval_output(input, p, mode, inplace)
    check_floating(input, op)
    if p == 0.0 or input.numel() == 0:
        return input
    seed, offset = resolve_stream(generator, seed, offset, math.prod(mask_shape))
    threshold, scale = rng.keep_threshold(p), keep_scale(p, mode)
    if inplace:
        return keep_inplace(input, seed, offset, threshold, scale, mask_shape)
    return torch.ops.dropkit.keep(input, seed, offset, threshold, scale, mask_shape)
