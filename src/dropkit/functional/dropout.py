"""Standard dropout, inverted and classic (Hinton et al. 2012; Srivastava et al. 2014)."""

from __future__ import annotations

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

__all__ = ["dropout"]


def dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Zero each element independently with probability ``p``.

    Hinton et al. 2012, "Improving neural networks by preventing co-adaptation of feature
    detectors"; Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 15. With :math:`m_i \sim \mathrm{Bernoulli}(1-p)`:

    - ``mode="inverted"`` (as ``torch.nn.functional.dropout``): training gives
      :math:`y_i = x_i m_i / (1-p)`; evaluation is the identity.
    - ``mode="classic"`` (the 2012 paper, AlexNet): training gives :math:`y_i = x_i m_i`;
      evaluation gives :math:`y_i = (1-p) x_i`, the "mean network".

    Both forms have the same ratio of test-time output to expected train-time output:
    inverted has :math:`E[y] = x` at train and :math:`y = x` at test; classic has
    :math:`E[y] = (1-p) x` at train and :math:`y = (1-p) x` at test. A network trained in one form
    is the other form's network with the next layer's weights scaled by :math:`1-p`.

    The mask is drawn from dropkit's counter-based Philox stream: element ``i`` of the row-major
    flattening is kept iff its stream word at ``i + offset`` is ``>= round(p * 2**32)``. The mask is
    never stored; backward regenerates it from the seed. Dropped elements are *multiplied* by zero,
    so NaN and Inf inputs become NaN where dropped, exactly as in torch.

    Args:
        input: a floating tensor of any shape (float16, bfloat16, float32, float64), on any device
            (non-CPU devices use the reference kernel, which draws the same masks).
        p: drop probability in [0, 1]. ``p=0`` is the identity, ``p=1`` zeroes everything.
        training: apply dropout if True (or inside :func:`dropkit.mc.stochastic`).
        inplace: write the result into ``input``.
        mode: ``"inverted"`` or ``"classic"``.
        generator: the torch generator to draw the seed from (default: the default CPU generator).
        seed: an explicit 64-bit seed, giving a chosen mask (e.g. the same mask for two inputs).
        offset: stream offset of element 0 (a shard starting at global element ``s`` passes ``s``).

    Returns:
        A tensor of ``input``'s shape and dtype (``input`` itself when ``inplace``, and in eval
        or ``p=0`` inverted dropout, like torch).
    """
    check_floating(input, "dropout")
    p = check_probability(p)
    check_mode(mode)
    check_offset(offset)
    if not _state.is_stochastic(training):
        if mode == "inverted" or p == 0.0:
            return input
        return input.mul_(1.0 - p) if inplace else input * (1.0 - p)
    if p == 0.0 or input.numel() == 0:
        return input
    threshold = rng.keep_threshold(p)
    if mode == "classic":
        scale = 1.0
    else:
        scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    seed_t, offset = resolve_stream(input, generator, seed, offset, input.numel())
    if inplace:
        if torch.is_grad_enabled() and input.requires_grad:
            # The mutating op has no autograd rule; route through the out-of-place op (which saves
            # only the seed) and let copy_ record the in-place update for autograd.
            return input.copy_(ops.keep_mask(input, seed_t, offset, threshold, scale))
        torch.ops.dropkit.keep_mask_apply_(input, seed_t, offset, threshold, scale)
        return input
    return ops.keep_mask(input, seed_t, offset, threshold, scale)
