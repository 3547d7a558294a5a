"""Gaussian (multiplicative) dropout (Srivastava et al. 2014, section 10)."""

from __future__ import annotations

import math

import torch

from dropkit import _state
from dropkit.ops import NORMAL_NOISE, overridable, resolve_stream
from dropkit.ops.checks import (
    check_flag,
    check_floating,
    check_probability,
    check_stream_args,
    check_tensor,
    check_training,
)

__all__ = ["check_gaussian_p", "gaussian_dropout"]


def check_gaussian_p(p) -> float:
    """``p`` in [0, 1) (``p = 1`` would mean infinite variance)."""
    return check_probability(p, op="gaussian_dropout", what="gaussian_dropout: p", closed=False)


@overridable
def gaussian_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Multiply each element by Gaussian noise with mean 1 and variance ``p / (1 - p)``.

    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple Way to Prevent
    Neural Networks from Overfitting", JMLR 2014, section 10: :math:`y = x\,r`,
    :math:`r \sim \mathcal{N}(1, \sigma^2)`, :math:`\sigma^2 = p/(1-p)` — the variance of inverted
    Bernoulli dropout with drop probability ``p``, so ``p`` means the same as in
    :func:`dropkit.functional.dropout`. :math:`E[y] = x`; evaluation is the identity.

    Noise comes from :func:`dropkit.rng.normal` (Box–Muller; element ``i`` of the logical row-major
    order consumes stream words ``2(i + offset)`` and ``2(i + offset) + 1``) and is regenerated in
    backward, not stored. The output keeps the input's layout.

    Shape: any; output the same. torch has no Gaussian dropout; Keras' ``GaussianDropout(rate)``
    uses the same variance ``rate / (1 - rate)``.

    Args:
        p: in [0, 1).
    """
    check_tensor(input, "gaussian_dropout")
    p = check_gaussian_p(p)
    check_training(training, "gaussian_dropout")
    check_flag(inplace, "inplace", op="gaussian_dropout")
    check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or p == 0.0:
        return input
    check_floating(input, "gaussian_dropout")
    if input.numel() == 0:
        return input
    # variate k reads words 2k, 2k + 1 of the stream: the offset counts variates
    seed_t, offset = resolve_stream(generator, seed, offset, input.numel(),
                                    words=2 * (input.numel() + offset) - offset)  # fmt: skip
    std = math.sqrt(p / (1.0 - p))
    if inplace:
        return input.copy_(NORMAL_NOISE(input, seed_t, offset, affine=True, std=std))
    return NORMAL_NOISE(input, seed_t, offset, affine=True, std=std)
