"""Branch dropping at joins (FractalNet's drop-path; Larsson, Maire, Shakhnarovich 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit import _state, rng
from dropkit.ops import BRANCHES, overridable, resolve_stream
from dropkit.ops.checks import (
    check_choice,
    check_floating,
    check_int,
    check_probability,
    check_stream_args,
    check_tensors,
    check_training,
)

__all__ = ["drop_branches"]


@overridable(sequences=True)
def drop_branches(
    branches: Sequence[torch.Tensor],
    p: float = 0.15,
    training: bool = True,
    *,
    mode: str = "local",
    column: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Join ``K`` branch outputs by their mean, dropping branches in training.

    Larsson, Maire, Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without Residuals",
    ICLR 2017, section 3.1:

    - ``mode="local"``: for each sample ``n``, branch ``k`` is kept iff its stream word at
      ``n * (K + 1) + k + offset`` is ``>= round(p * 2**32)``; when every branch of a sample is
      dropped, the branch ``floor(u K)`` is kept instead, with ``u`` the uniform float of word
      ``n * (K + 1) + K + offset`` — so at least one path always survives. The output is the mean
      of the kept branches: :math:`y_n = \sum_k m_{nk} x_{kn} / \sum_k m_{nk}`.
    - ``mode="global"``: only the branch at position ``column`` is kept for the whole batch (the
      network-wide column choice of :class:`dropkit.nn.FractalDropPath`); no randomness here.

    In evaluation (``training=False``) the output is the plain mean of all branches, or the branch
    at ``column`` if one is given (evaluating a single column, the paper's "deepest column").

    Shape: each branch ``(N, ...)``, all equal; output the same.
    """
    branches = check_tensors(branches, "drop_branches", "branches")
    shape = branches[0].shape
    if any(b.shape != shape for b in branches):
        raise ValueError(
            f"drop_branches: all branches must have one shape, got "
            f"{[tuple(b.shape) for b in branches]}"
        )
    if any(b.dtype != branches[0].dtype or b.device != branches[0].device for b in branches):
        raise TypeError(
            f"drop_branches: all branches must have one dtype and device, got "
            f"{[(b.dtype, str(b.device)) for b in branches]}"
        )
    check_floating(branches[0], "drop_branches", "branches[0]")
    if branches[0].dim() == 0:
        raise ValueError("drop_branches: branches must have a batch dimension (N, ...), got 0-d")
    check_choice(mode, "mode", ("local", "global"), op="drop_branches")
    k = len(branches)
    if column is not None:
        column = check_int(column, "column", op="drop_branches", minimum=0, maximum=k - 1)
    p = check_probability(p, op="drop_branches")
    check_training(training, "drop_branches")
    check_stream_args(generator, seed, offset)
    if mode == "global" and _state.is_stochastic(training):
        if column is None:
            raise ValueError("drop_branches: mode='global' needs the kept column")
        return branches[column]
    if not _state.is_stochastic(training):
        return branches[column] if column is not None else torch.stack(branches).mean(0)
    stacked = torch.stack(branches)  # (K, N, ...)
    n = shape[0]
    seed_t, offset = resolve_stream(generator, seed, offset, n * (k + 1))
    return BRANCHES(stacked, seed_t, offset, affine=True, threshold=rng.keep_threshold(p)).sum(0)
