"""Broadcast dropout: one mask over a shape broadcast across the input (Keras' ``noise_shape``).

The base of channel (spatial) dropout, locked dropout and other structured masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit import _state, rng
from dropkit.functional._checks import (
    check_floating,
    check_mode,
    check_offset,
    check_probability,
    resolve_stream,
)
from dropkit.kernels import ops

__all__ = ["broadcast_dropout", "resolve_noise_shape"]


def resolve_noise_shape(input: torch.Tensor, noise_shape: Sequence[int | None]) -> tuple[int, ...]:
    """``noise_shape`` with ``None`` entries filled from ``input``; every entry must be 1 or the
    input's size in that dimension, and the rank must match."""
    if len(noise_shape) != input.dim():
        raise ValueError(
            f"noise_shape must have one entry per input dimension ({input.dim()}), "
            f"got {len(noise_shape)}: {tuple(noise_shape)}"
        )
    shape = []
    for dim, (size, n) in enumerate(zip(input.shape, noise_shape)):
        n = size if n is None else int(n)
        if n not in (1, size):
            raise ValueError(
                f"noise_shape[{dim}] must be 1, None or the input size {size}, got {n}"
            )
        shape.append(n)
    return tuple(shape)


def broadcast_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    noise_shape: Sequence[int | None],
    mode: str = "inverted",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Dropout with one Bernoulli mask of ``noise_shape`` broadcast over ``input``.

    Keras' ``Dropout(noise_shape=...)``: :math:`y = x \cdot m / (1-p)` (inverted) or
    :math:`y = x \cdot m` (classic; evaluation multiplies by :math:`1-p`), where
    :math:`m \sim \mathrm{Bernoulli}(1-p)` has shape ``noise_shape`` and is broadcast. A
    dimension of size 1 (or ``None`` → the input's size) in ``noise_shape`` shares the mask along
    it. Mask element ``k`` (row-major over ``noise_shape``) reads stream word ``k + offset``; so
    with the batch dimension leading, sample ``n`` uses words ``n * prod(noise_shape[1:])`` on.
    The mask is regenerated in backward, not stored.

    Dropout itself: Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple
    Way to Prevent Neural Networks from Overfitting", JMLR 2014; ``noise_shape`` as in
    ``keras.layers.Dropout`` (which has no classic mode, ``generator`` or ``seed``). Evaluation
    (``training=False`` outside :mod:`dropkit.mc`) returns ``input`` itself (inverted) or
    :math:`x(1-p)` (classic). Drops multiply by 0, so NaN/inf inputs stay NaN.

    Args:
        input: floating tensor of any shape.
        p: drop probability in [0, 1].
        noise_shape: one entry per input dimension: 1 (shared), or ``None`` / the input size.
        mode, generator, seed, offset: as in :func:`dropkit.functional.dropout`.
    """
    check_floating(input, "broadcast_dropout")
    p = check_probability(p)
    check_mode(mode)
    check_offset(offset)
    shape = resolve_noise_shape(input, noise_shape)
    if not _state.is_stochastic(training):
        if mode == "inverted" or p == 0.0:
            return input
        return input.mul_(1.0 - p) if inplace else input * (1.0 - p)
    if p == 0.0 or input.numel() == 0:
        return input
    seed_t, offset = resolve_stream(input, generator, seed, offset, math.prod(shape))
    scale = 1.0 if mode == "classic" else (0.0 if p == 1.0 else 1.0 / (1.0 - p))
    threshold = rng.keep_threshold(p)
    if shape == tuple(input.shape):
        result = ops.keep_mask(input, seed_t, offset, threshold, scale)
    else:
        result = ops.broadcast_keep_mask(input, seed_t, offset, threshold, scale, shape)
    return input.copy_(result) if inplace else result
