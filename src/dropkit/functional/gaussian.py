"""Gaussian (multiplicative) dropout (Srivastava et al. 2014, section 10)."""

from __future__ import annotations

import math

import torch

from dropkit import _state
from dropkit.functional._checks import check_floating, check_offset, resolve_stream
from dropkit.kernels import gaussian as _gaussian  # noqa: F401  (registers the custom op)

__all__ = ["gaussian_dropout"]


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

    Noise comes from :func:`dropkit.rng.normal` (Box–Muller; element ``i`` consumes stream words
    ``2(i + offset)`` and ``2(i + offset) + 1``) and is regenerated in backward, not stored.

    Shape: any; output the same. torch has no Gaussian dropout; Keras' ``GaussianDropout(rate)``
    uses the same variance ``rate / (1 - rate)``.

    Args:
        p: in [0, 1) (``p = 1`` would mean infinite variance).
    """
    check_floating(input, "gaussian_dropout")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"gaussian_dropout probability p must be in [0, 1), got {p!r}")
    check_offset(offset)
    if not _state.is_stochastic(training) or p == 0.0 or input.numel() == 0:
        return input
    seed_t, offset = resolve_stream(input, generator, seed, offset, input.numel())
    std = math.sqrt(p / (1.0 - p))
    result = torch.ops.dropkit.gaussian_noise_apply(input, seed_t, offset, std)
    return input.copy_(result) if inplace else result
