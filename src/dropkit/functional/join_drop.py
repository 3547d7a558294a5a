"""Branch dropping at joins (FractalNet's drop-path; Larsson, Maire, Shakhnarovich 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit import _state, rng
from dropkit.functional._checks import check_offset, check_probability, resolve_stream

__all__ = ["drop_branches"]


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
    if not isinstance(branches, (list, tuple)) or not branches:
        raise ValueError("branches must be a non-empty list of tensors")
    shape = branches[0].shape
    if any(b.shape != shape for b in branches):
        raise ValueError(
            f"all branches must have one shape, got {[tuple(b.shape) for b in branches]}"
        )
    if mode not in ("local", "global"):
        raise ValueError(f"mode must be 'local' or 'global', got {mode!r}")
    k = len(branches)
    if column is not None and not (isinstance(column, int) and 0 <= column < k):
        raise ValueError(f"column must be an integer in [0, {k - 1}], got {column!r}")
    p = check_probability(p)
    check_offset(offset)
    if mode == "global" and _state.is_stochastic(training):
        if column is None:
            raise ValueError("mode='global' needs the kept column")
        return branches[column]
    if not _state.is_stochastic(training):
        return branches[column] if column is not None else torch.stack(list(branches)).mean(0)
    stacked = torch.stack(list(branches))  # (K, N, ...)
    n = shape[0]
    seed_t, offset = resolve_stream(stacked, generator, seed, offset, n * (k + 1))
    words = rng.stream_words(n * (k + 1), int(seed_t), offset, device=stacked.device)
    words = words.reshape(n, k + 1)
    keep = words[:, :k] >= rng.keep_threshold(p)
    fallback = ((words[:, k] >> 8).to(torch.float64) * 2.0**-24 * k).long()
    none_kept = ~keep.any(1)
    keep[none_kept, fallback[none_kept]] = True
    weights = keep.to(stacked.dtype) / keep.sum(1, keepdim=True).to(stacked.dtype)  # (N, K)
    weights = weights.t().reshape(k, n, *([1] * (len(shape) - 1)))
    return (stacked * weights).sum(0)
