"""The fused bias-dropout-add of transformer blocks (as Megatron-LM's ``bias_dropout_add``)."""

from __future__ import annotations

import torch

from dropkit import _state, rng
from dropkit.functional._common import keep_scale
from dropkit.ops import overridable, resolve_stream
from dropkit.ops.checks import (
    check_floating,
    check_probability,
    check_stream_args,
    check_tensor,
    check_training,
)

__all__ = ["bias_dropout_add"]


@overridable
def bias_dropout_add(
    x: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""``residual + dropout(x + bias, p)`` in one pass over the data.

    The residual connection of a transformer block after its attention or MLP projection, fused as
    in Megatron-LM (Shoeybi et al. 2019, "Megatron-LM: Training Multi-Billion Parameter Language
    Models Using Model Parallelism"; dropout: Srivastava et al. 2014):
    :math:`y = r + (x + b)\,m / (1-p)`, :math:`m_i \sim \mathrm{Bernoulli}(1-p)`, the mask that
    :func:`dropkit.functional.dropout` draws for ``x`` with the same seed and offset (element ``i``
    of ``x``'s logical row-major order reads stream word ``i + offset``). Formed in the
    accumulation dtype with three roundings, ``t = x + b``, ``u = t m s``, ``r + u``, then rounded
    once to ``x``'s dtype (:func:`dropkit.kernels.reference.bias_dropout_add`). Only the seed is
    kept for backward: :math:`\partial y/\partial x = m/(1-p)`, the bias gradient is that summed
    over the leading dimensions, the residual's gradient is the incoming one. Evaluation
    (``training=False`` outside :mod:`dropkit.mc`): ``residual + x + bias``.

    Shapes: ``x`` and ``residual`` ``(*, H)`` (the same shape and dtype), ``bias`` broadcastable to
    ``x`` (usually ``(H,)``); output ``x``'s shape, dtype and layout.
    """
    op = "bias_dropout_add"
    check_floating(check_tensor(x, op, "x"), op, "x")
    check_tensor(bias, op, "bias", 2)
    check_tensor(residual, op, "residual", 3)
    if residual.shape != x.shape or residual.dtype != x.dtype or bias.dtype != x.dtype:
        raise ValueError(
            f"{op}: residual must have x's shape and dtype and bias x's dtype, got x "
            f"{tuple(x.shape)} {x.dtype}, bias {tuple(bias.shape)} {bias.dtype}, residual "
            f"{tuple(residual.shape)} {residual.dtype}"
        )
    if bias.dim() > x.dim() or any(
        b not in (1, s) for b, s in zip(reversed(bias.shape), reversed(x.shape))
    ):
        raise ValueError(
            f"{op}: bias of shape {tuple(bias.shape)} does not broadcast to x's {tuple(x.shape)}"
        )
    p = check_probability(p, op=op)
    check_training(training, op)
    check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or p == 0.0 or x.numel() == 0:
        return residual + x + bias
    seed_t, offset = resolve_stream(generator, seed, offset, x.numel())
    if x.shape[x.dim() - bias.dim() :] != bias.shape:
        # The operator reads a bias of x's trailing shape; any other broadcast (a (1, H) or an
        # (N, 1) bias) is expanded to x's shape, and autograd sums its gradient back.
        bias = bias.expand(x.shape)
    return torch.ops.dropkit.bias_dropout_add(
        x, bias, residual, seed_t, offset, rng.keep_threshold(p), keep_scale(p, "inverted")
    )
