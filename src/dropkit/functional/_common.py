"""What the dropout-style functionals share: mode handling, scale, evaluation output."""

from __future__ import annotations

import math

import torch

from dropkit import _state, rng
from dropkit.ops import resolve_stream
from dropkit.ops.checks import (
    check_choice,
    check_flag,
    check_floating,
    check_probability,
    check_stream_args,
    check_tensor,
    check_training,
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


def check_input(input, op: str, name: str = "input") -> None:
    """:func:`~dropkit.ops.checks.check_tensor`, with the common plain dense tensor accepted
    inline."""
    if (
        type(input) is not torch.Tensor
        or input.layout != torch.strided
        or input.is_quantized
        or input.is_nested
    ):
        check_tensor(input, op, name)


def keep_inplace(input, seed, offset, threshold, scale, mask_shape) -> torch.Tensor:
    """``dropkit::keep_`` on ``input``; where autograd records the call, the out-of-place op and a
    ``copy_`` (an in-place operator with its own autograd kernel would save nothing more)."""
    if torch.is_grad_enabled() and input.requires_grad:
        return input.copy_(
            torch.ops.dropkit.keep(input, seed, offset, threshold, scale, mask_shape)
        )
    return torch.ops.dropkit.keep_(input, seed, offset, threshold, scale, mask_shape)


def keep_dropout(input, p, training, inplace, mask_shape, mode, generator, seed, offset, op,
                 rescale: bool = True):  # fmt: skip
    """Dropout with a mask over ``mask_shape`` (``None``: ``input``'s shape; else checked by the
    caller) broadcast over ``input``: the checks and the one operator call of every keep-and-scale
    method. ``rescale=False``: survivors keep their value (timm's ``scale_by_keep=False``) and
    evaluation is still the identity.

    The common call (a plain dense tensor, a float ``p`` in [0, 1], bool flags, the default mode
    and stream, no Monte-Carlo sample stream anywhere) is recognised by inline tests that only
    ever accept; every other value goes through its check in :mod:`dropkit.ops.checks`, the one
    place that decides what is valid.
    """
    # check_input's test, inline: one Python frame fewer on every call (test_dropout.py counts).
    if (
        type(input) is not torch.Tensor
        or input.layout != torch.strided
        or input.is_quantized
        or input.is_nested
    ):
        check_tensor(input, op)
    if type(p) is not float or not 0.0 <= p <= 1.0:
        p = check_probability(p, op=op)
    if type(training) is not bool:
        check_training(training, op)
    if type(inplace) is not bool:
        check_flag(inplace, "inplace", op=op)
    if mode != "inverted":
        check_mode(mode, op)
    if not (generator is None and seed is None and type(offset) is int and offset == 0):
        check_stream_args(generator, seed, offset)
    if not training and not _state.is_stochastic(training):
        return eval_output(input, p, mode, inplace)
    if not input.dtype.is_floating_point:
        check_floating(input, op)
    if p == 0.0 or input.numel() == 0:
        return input
    if mask_shape is None:
        mask_shape = list(input.shape)
    seed, offset = resolve_stream(generator, seed, offset, math.prod(mask_shape))
    threshold, scale = rng.keep_threshold(p), keep_scale(p, mode) if rescale else 1.0
    if inplace:
        return keep_inplace(input, seed, offset, threshold, scale, mask_shape)
    return torch.ops.dropkit.keep(input, seed, offset, threshold, scale, mask_shape)
