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
    "BLOCKS",
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


# -- DropBlock: grown blocks -----------------------------------------------------------------------
def _grow(seeds: torch.Tensor, sizes: list[int], starts: list[int], spatial) -> torch.Tensor:
    """The blocks ``[j, j + k)`` of every seed at ``j`` of ``seeds`` (per spatial dimension),
    seen from ``start`` on over the map's length: a separable dilation by shifted ORs (a
    stride-1 max-pool of the padded seed map computes the same mask).

    Each dimension is padded by ``k - 1`` zero slices and the ORs run over the *flat* buffer,
    shifted by ``shift * stride``: a shift never carries a slice past its own padding, and the
    ORs are long contiguous byte runs (``bitwise_or_`` on uint8; ``logical_or_`` on bool, and ORs
    over narrowed rows, measured several times slower)."""
    out = seeds.view(torch.uint8)
    for d, (k, start, length) in enumerate(zip(sizes, starts, spatial)):
        dim = 2 + d
        size = list(out.shape)
        size[dim] += k - 1
        padded = torch.zeros(size, dtype=torch.uint8, device=seeds.device)
        padded.narrow(dim, 0, out.shape[dim]).copy_(out)
        flat = padded.view(-1)
        grown = padded.clone()
        flat_grown, stride = grown.view(-1), padded.stride(dim)
        for shift in range(1, k):
            cut = shift * stride
            flat_grown[cut:].bitwise_or_(flat[:-cut])
        out = grown.narrow(dim, start, length)
    return out.view(torch.bool)


def _blocks(x, seed, offset, threshold, sizes, per_channel, clip, normalize, eps, noise):
    n, c, spatial = x.shape[0], x.shape[1], list(x.shape[2:])
    acc = accumulation_dtype(x.dtype)
    seed_shape = [n, c if per_channel else 1, *spatial]
    # A seed is a word that is *not* kept at the threshold round(gamma * 2**32).
    not_seed = keep_multiplier(seed_shape, seed, offset, threshold, 1.0, torch.float32, x.device)
    seeds = not_seed == 0
    if clip:  # a seed at i covers [i - a, i - a + k), a = k // 2, clipped to the map
        blocks = _grow(seeds, sizes, [k // 2 for k in sizes], spatial)
    else:  # seeds only where the whole block fits: region index j covers [j, j + k)
        region = (slice(None), slice(None)) + tuple(
            slice(k // 2, k // 2 + s - k + 1) for s, k in zip(spatial, sizes)
        )
        blocks = _grow(seeds[region], sizes, [0] * len(sizes), spatial)
    zero = torch.zeros((), dtype=acc, device=x.device)
    if noise:
        words = n * seed_shape[1] * blocks[0, 0].numel()
        z = kernels.normal(tuple(x.shape), seed, (offset + words + 1) // 2, x.device, acc)
        return torch.where(blocks, zero, torch.ones((), dtype=acc, device=x.device)), (
            torch.where(blocks, z, zero)
        )
    # The normaliser counts kept elements of x (a shared mask once per channel), then the
    # multiplier is written in one pass: 0 in a block, the scale elsewhere.
    repeat = 1 if per_channel else c
    if normalize == "sample":
        per = blocks[0].numel()
        kept = (per - blocks.reshape(n, -1).sum(1)).to(acc) * repeat
        scale = (per * repeat / (eps + kept)).reshape(n, *([1] * (x.dim() - 1)))
    elif normalize == "batch":
        kept = (blocks.numel() - torch.count_nonzero(blocks)).to(acc) * repeat
        scale = blocks.numel() * repeat / (eps + kept)
    else:
        scale = torch.ones((), dtype=acc, device=x.device)
    return torch.where(blocks, zero, scale), None


#: DropBlock's ``x * M * s`` (or, with ``noise``, ``x * M + z (1 - M)``); see
#: :func:`dropkit.functional.drop_block2d` for the stream layout.
BLOCKS = MaskOp(
    "blocks",
    "int threshold, int[] sizes, bool per_channel, bool clip, str normalize, float eps, bool noise",
    _blocks,
)


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
