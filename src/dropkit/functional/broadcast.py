"""Broadcast dropout: one mask over a shape broadcast across the input (Keras' ``noise_shape``).

The base of channel (spatial) dropout, locked dropout and other structured masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit.functional._common import keep_dropout
from dropkit.ops import overridable
from dropkit.ops.checks import check_tensor

__all__ = ["broadcast_dropout", "check_noise_shape", "resolve_noise_shape"]


def check_noise_shape(noise_shape, op: str = "broadcast_dropout") -> tuple[int | None, ...]:
    """``noise_shape`` as a tuple of ``None`` or integers >= 1 (checked once, in the module's
    ``__init__`` and in the functional)."""
    if isinstance(noise_shape, (str, bytes)) or not isinstance(noise_shape, Sequence):
        raise TypeError(
            f"{op}: noise_shape must be a sequence of None or ints, got "
            f"{type(noise_shape).__name__}"
        )
    for n in noise_shape:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
            raise TypeError(
                f"{op}: noise_shape entries must be None or integers >= 1, got "
                f"{type(n).__name__} {n!r}"
            )
        if n is not None and n < 1:
            raise ValueError(f"{op}: noise_shape entries must be None or integers >= 1, got {n!r}")
    return tuple(noise_shape)


def resolve_noise_shape(input: torch.Tensor, noise_shape: Sequence[int | None],
                        op: str = "broadcast_dropout") -> list[int]:  # fmt: skip
    """``noise_shape`` with ``None`` entries filled from ``input``; every entry must be 1 or the
    input's size in that dimension, and the rank must match."""
    if len(noise_shape) != input.dim():
        raise ValueError(
            f"{op}: noise_shape must have one entry per input dimension ({input.dim()}), "
            f"got {len(noise_shape)}: {tuple(noise_shape)}"
        )
    shape = []
    for dim, (size, n) in enumerate(zip(input.shape, noise_shape)):
        n = size if n is None else int(n)
        if n not in (1, size):
            raise ValueError(
                f"{op}: noise_shape[{dim}] must be 1, None or the input size {size}, got {n}"
            )
        shape.append(n)
    return shape


@overridable
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
    The mask is regenerated in backward, not stored; the output keeps the input's layout.

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
    check_tensor(input, "broadcast_dropout")
    shape = resolve_noise_shape(input, check_noise_shape(noise_shape))
    return keep_dropout(input, p, training, inplace, shape, mode, generator, seed, offset,
                        "broadcast_dropout")  # fmt: skip
