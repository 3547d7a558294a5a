"""Standard dropout, inverted and classic (Hinton et al. 2012; Srivastava et al. 2014)."""

from __future__ import annotations

import torch
from torch.overrides import handle_torch_function, has_torch_function

from dropkit.functional._common import keep_dropout

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

    Both forms have the same ratio of test-time output to expected train-time output. A network
    trained in one form is the other form's network with the next layer's weights scaled by
    :math:`1-p`.

    The mask is drawn from dropkit's counter-based Philox stream: element ``i`` of the *logical*
    row-major flattening is kept iff its stream word at ``i + offset`` is ``>= round(p * 2**32)``,
    whatever the input's memory layout; the output has the input's layout (as torch). The mask is
    never stored; backward regenerates it from the seed. Dropped elements are *multiplied* by zero,
    so NaN and Inf inputs become NaN where dropped, exactly as in torch.

    Args:
        input: a tensor of any shape; floating (float16, bfloat16, float32, float64) when a mask is
            drawn, any dtype in evaluation (returned as is, as torch).
        p: drop probability in [0, 1] (a Python or NumPy number, a bool or a one-element tensor,
            as torch takes it). ``p=0`` is the identity, ``p=1`` zeroes everything.
        training: apply dropout if True (or inside :func:`dropkit.mc.stochastic`).
        inplace: write the result into ``input``.
        mode: ``"inverted"`` or ``"classic"``.
        generator: the torch generator to draw the seed from (default: the default CPU generator).
        seed: an explicit 64-bit seed, giving a chosen mask (e.g. the same mask for two inputs).
        offset: stream offset of element 0 (a shard starting at global element ``s`` passes ``s``).

    Returns:
        A tensor of ``input``'s shape, dtype and layout (``input`` itself when ``inplace``, and in
        eval or ``p=0`` inverted dropout, like torch).
    """
    # The __torch_function__ protocol inline, as torch.nn.functional.dropout has it (the hottest
    # functional saves the frame of dropkit.ops.overridable): fx proxies, subclasses and modes
    # among the tensor arguments receive the public call.
    if has_torch_function((input, seed)):
        relevant = tuple(a for a in (input, seed) if hasattr(type(a), "__torch_function__"))
        return handle_torch_function(
            dropout, relevant, input, p, training, inplace, mode=mode, generator=generator,
            seed=seed, offset=offset,
        )  # fmt: skip
    return keep_dropout(input, p, training, inplace, None, mode, generator, seed, offset,
                        "dropout")  # fmt: skip
