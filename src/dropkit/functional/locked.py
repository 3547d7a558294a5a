"""Locked (variational) dropout for sequences (Gal & Ghahramani 2016)."""

from __future__ import annotations

import torch

from dropkit.functional._common import keep_dropout
from dropkit.ops import overridable
from dropkit.ops.checks import check_flag, check_tensor, check_training

__all__ = ["locked_dropout"]


@overridable
def locked_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    batch_first: bool = False,
    inplace: bool = False,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""One dropout mask per sequence, shared over all time steps.

    Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
    Networks", NeurIPS 2016 (as used between LSTM layers in AWD-LSTM, Merity et al. 2018):
    :math:`y_{t,n,c} = x_{t,n,c}\, m_{n,c} / (1-p)`, :math:`m_{n,c} \sim \mathrm{Bernoulli}(1-p)`.

    Shape: ``(T, N, C)``, or ``(N, T, C)`` with ``batch_first=True``. The mask has shape
    ``(1, N, C)`` / ``(N, 1, C)``; mask element ``n*C + c`` reads stream word ``n*C + c + offset``
    in both layouts, so the two layouts of the same data draw the same masks (the ``N*C`` words
    from ``offset``). The mask is regenerated in backward. Evaluation (``training=False`` outside
    :mod:`dropkit.mc`) is the identity (``mode="classic"``: :math:`x(1-p)`). Other keyword
    arguments (``inplace``, ``mode``, ``generator``, ``seed``, ``offset``) as in
    :func:`dropkit.functional.dropout`. AWD-LSTM's ``LockedDropout`` draws with
    ``bernoulli_`` over ``(1, N, C)`` in the time-first layout only; this is the same
    distribution.
    """
    check_tensor(input, "locked_dropout")
    check_flag(batch_first, "batch_first", op="locked_dropout")
    check_training(training, "locked_dropout")
    if input.dim() != 3:
        raise ValueError(
            "locked_dropout expects a 3D input (T, N, C) or (N, T, C) with batch_first, "
            f"got {input.dim()}D"
        )
    n, c = (input.shape[0], input.shape[2]) if batch_first else (input.shape[1], input.shape[2])
    mask_shape = [n, 1, c] if batch_first else [1, n, c]
    return keep_dropout(input, p, training, inplace, mask_shape, mode, generator, seed, offset,
                          "locked_dropout")  # fmt: skip
