"""Alpha dropout for self-normalising (SELU) networks (Klambauer et al. 2017), as in torch."""

from __future__ import annotations

import math

import torch

from dropkit import _state, rng
from dropkit.ops import overridable, resolve_stream
from dropkit.ops.checks import (
    check_flag,
    check_floating,
    check_probability,
    check_stream_args,
    check_tensor,
    check_training,
)

__all__ = ["alpha_dropout", "feature_alpha_dropout"]

# -lambda * alpha of SELU: the value a SELU unit saturates to; torch uses the same constant.
SELU_ALPHA_PRIME = 1.7580993408473766


def _alpha(input, p, training, inplace, feature, generator, seed, offset):
    op = "feature_alpha_dropout" if feature else "alpha_dropout"
    check_tensor(input, op)
    p = check_probability(p, op=op)
    check_training(training, op)
    check_flag(inplace, "inplace", op=op)
    check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or p == 0.0:
        return input  # any dtype, as torch
    check_floating(input, op)
    if input.numel() == 0:
        return input
    if p == 1.0:
        return input.mul_(0.0) if inplace else input * 0.0
    if feature:
        if input.dim() < 2:
            # torch's error, raised (as torch does) only when a mask is actually drawn
            raise RuntimeError(
                "Feature dropout requires at least 2 dimensions in the input "
                f"(feature_alpha_dropout expects (N, C, ...), got {input.dim()}D)"
            )
        shape = list(input.shape[:2]) + [1] * (input.dim() - 2)
    else:
        shape = list(input.shape)
    seed_t, offset = resolve_stream(generator, seed, offset, math.prod(shape))
    a = 1.0 / math.sqrt((SELU_ALPHA_PRIME**2 * p + 1.0) * (1.0 - p))
    args = (seed_t, offset, rng.keep_threshold(p), a, SELU_ALPHA_PRIME * a * p,
            -SELU_ALPHA_PRIME * a * (1.0 - p), shape)  # fmt: skip
    if not inplace:
        return torch.ops.dropkit.keep_affine(input, *args)
    if torch.is_grad_enabled() and input.requires_grad:
        return input.copy_(torch.ops.dropkit.keep_affine(input, *args))
    return torch.ops.dropkit.keep_affine_(input, *args)


@overridable
def alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Alpha dropout: dropped units are set to SELU's saturation value and an affine correction
    keeps zero mean and unit variance.

    Klambauer, Unterthiner, Mayr, Hochreiter, "Self-Normalizing Neural Networks", NeurIPS 2017.
    With :math:`\alpha' = 1.7580993408473766`, :math:`a = ((\alpha'^2 p + 1)(1-p))^{-1/2}` and
    :math:`m \sim \mathrm{Bernoulli}(1-p)`: :math:`y = a\,x\,m + \alpha' a\,(m-1) + \alpha' a p`
    — kept units give :math:`a x + \alpha' a p`, dropped ones :math:`-\alpha' a (1-p)`; the same
    formula as ``torch.nn.functional.alpha_dropout`` (including its default ``training=False``
    and zeros for ``p = 1``). Mask element ``i`` (row-major) reads stream word ``i + offset``; the
    mask is regenerated in backward (gradient :math:`a\,m`). Shape: any; output the same, in the
    input's layout. Evaluation (``training=False`` outside :mod:`dropkit.mc`) returns ``input``
    (of any dtype, as torch). The masks come from the dropkit stream rather than torch's
    generator (same distribution).
    """
    return _alpha(input, p, training, inplace, False, generator, seed, offset)


@overridable
def feature_alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Alpha dropout of whole channels of ``(N, C, ...)`` input (``torch``'s
    ``feature_alpha_dropout``): the formula of :func:`alpha_dropout` with one mask value
    :math:`m_{n,c}` per sample and channel. Mask element ``n*C + c`` reads stream word
    ``n*C + c + offset``. Like torch, dimension 0 is always the batch (no unbatched form) and a
    1D input is a ``RuntimeError`` when a mask is drawn."""
    return _alpha(input, p, training, inplace, True, generator, seed, offset)
