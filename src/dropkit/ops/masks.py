"""The mask methods, each a declaration of its multiplier for :class:`~dropkit.ops.MaskOp`.

Every multiplier reads the stream through the backend contract (:mod:`dropkit.kernels`) over the
mask's *logical* row-major elements, so the same seed gives the same mask whatever ``x``'s layout.
"""

from __future__ import annotations

import torch

from dropkit import kernels, rng
from dropkit.kernels.reference import accumulation_dtype
from dropkit.ops._factory import MaskOp

__all__ = [
    "BRANCHES",
    "EMBEDDING",
    "HOLES",
    "NORMAL_NOISE",
    "keep_multiplier",
]


def keep_multiplier(shape, seed: int, offset: int, threshold: int, scale: float, dtype, device):
    """``scale`` where the stream word of a mask element is ``>= threshold``, else 0 (``shape``;
    one pass of ``dropkit::keep_`` over a tensor of ones: ``1 * scale`` is exact)."""
    ones = torch.ones(shape, dtype=dtype, device=device)
    return kernels.apply_keep_mask(ones, seed, offset, threshold, scale, out=ones)


# -- Gaussian (multiplicative) noise ---------------------------------------------------------------
def _normal(x, seed, offset, std):
    z = kernels.normal(tuple(x.shape), seed, offset, device=x.device, dtype=torch.float64)
    return (1.0 + std * z).to(accumulation_dtype(x.dtype)), None


#: ``x * (1 + std z)``, ``z`` the stream's standard normals (variate ``i`` at words 2(i+offset)).
NORMAL_NOISE = MaskOp("normal_noise", "float std", _normal)


# -- Cutout: square holes filled with a value ------------------------------------------------------
def _holes(x, seed, offset, size, n_holes, fill):
    batch_shape = x.shape if x.dim() == 4 else (1, *x.shape)
    n, _, h, w = batch_shape
    u = kernels.stream_words(n * n_holes * 2, seed, offset, x.device).reshape(n, n_holes, 2)
    u = (u >> 8).double() * 2.0**-24
    top = (u[..., 0] * h).floor().long() - size // 2
    left = (u[..., 1] * w).floor().long() - size // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + size)  # (n, holes, h)
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + size)
    holes = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # (n, h, w)
    keep = ~holes[:, None]
    keep = keep if x.dim() == 4 else keep[0]
    return keep, torch.tensor(fill, dtype=x.dtype, device=x.device)


#: Cutout: ``where(outside the holes, x, fill)``.
HOLES = MaskOp("holes", "int size, int n_holes, float fill", _holes, select=True)


# -- embedding dropout: the mask of word types, looked up by id ------------------------------------
def _embedding(x, seed, offset, ids, threshold, scale):
    acc = accumulation_dtype(x.dtype)
    keep = rng.stream_words_at(ids, seed, offset) >= threshold
    zero = torch.tensor(0.0, dtype=acc, device=x.device)
    return torch.where(keep, torch.tensor(scale, dtype=acc, device=x.device), zero)[..., None], None


#: ``x[..., d] * scale * [word(ids[...] + offset) >= threshold]`` for embeddings ``x``: one mask
#: entry per word type, looked up by id.
EMBEDDING = MaskOp("embedding_keep", "Tensor ids, int threshold, float scale", _embedding)


# -- FractalNet's branch drop: weights of a mean over the kept branches ----------------------------
def _branches(x, seed, offset, threshold):
    k, n = x.shape[0], x.shape[1]
    words = kernels.stream_words(n * (k + 1), seed, offset, x.device).reshape(n, k + 1)
    keep = words[:, :k] >= threshold
    fallback = ((words[:, k] >> 8).to(torch.float64) * 2.0**-24 * k).long()
    none_kept = ~keep.any(1)
    keep[none_kept, fallback[none_kept]] = True
    acc = accumulation_dtype(x.dtype)
    weights = keep.to(acc) / keep.sum(1, keepdim=True).to(acc)  # (N, K)
    return weights.t().reshape(k, n, *([1] * (x.dim() - 2))), None


#: Stacked branches ``(K, N, ...)`` times the weights of sample ``n``'s kept branches (their sum
#: over dim 0 is the join).
BRANCHES = MaskOp("branches", "int threshold", _branches)
