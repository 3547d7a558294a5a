"""The reference dropout kernel: plain torch, obviously correct, the definition of the semantics.

Every fast backend must reproduce :func:`apply_keep_mask` and :func:`apply_keep_affine` bit for
bit. The multiplier of element
``i`` is ``scale`` if its stream word is ``>= threshold`` and ``0`` otherwise; the product is formed
in the accumulation dtype (float64 for float64 inputs, float32 for every other floating dtype) and
rounded once, to nearest even, to the input dtype. A dropped element is *multiplied* by zero, so a
NaN or an Inf input stays NaN in the output, exactly as with ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import math

import torch

from dropkit import rng

__all__ = [
    "accumulation_dtype",
    "affine_from_words",
    "apply_keep_affine",
    "apply_keep_mask",
    "bias_dropout_add",
    "blocks",
    "keep_multiplier",
    "normal",
    "stream_words",
]

# The stream itself, re-exported so every backend module offers the same functions.
stream_words = rng.stream_words
normal = rng.normal


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the product is formed in before rounding to ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
    mask_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """``out = x * (scale if word(i) >= threshold else 0)`` over the row-major flattening of ``x``.

    ``out`` (optional) receives the result and may be ``x`` itself; it must have ``x``'s shape.
    Also serves broadcast masks: with ``mask_shape`` broadcastable to ``x.shape`` (same number of
    dimensions), the stream indexes the elements of the *mask* and the mask is broadcast over ``x``.
    """
    acc = accumulation_dtype(x.dtype)
    shape = x.shape if mask_shape is None else tuple(mask_shape)
    multiplier = keep_multiplier(shape, seed, offset, threshold, scale, acc, x.device)
    return _written((x.to(acc) * multiplier).to(x.dtype), out)


def apply_keep_affine(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    a: float,
    kept_shift: float,
    dropped_value: float,
    out: torch.Tensor | None = None,
    mask_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """``out = x * M + B`` (alpha dropout's affine map): where the stream word of the mask element
    is ``>= threshold`` (kept) ``M = a`` and ``B = kept_shift``, elsewhere ``M = 0`` and
    ``B = dropped_value``.

    ``a``, ``kept_shift`` and ``dropped_value`` are rounded once to the accumulation dtype; the
    product ``x * M`` is rounded in it, then the sum ``+ B`` (two roundings: fast backends must
    not contract them into a fused multiply-add), then the result once to ``x.dtype``: exactly
    :class:`dropkit.ops.MaskOp`'s affine route. A dropped NaN stays NaN (``NaN * 0 + B``).
    ``out`` and ``mask_shape`` as in :func:`apply_keep_mask`.
    """
    shape = x.shape if mask_shape is None else tuple(mask_shape)
    words = rng.stream_words(math.prod(shape), seed, offset, device=x.device).reshape(shape)
    return affine_from_words(x, words, threshold, a, kept_shift, dropped_value, out)


def affine_from_words(
    x: torch.Tensor,
    words: torch.Tensor,
    threshold: int,
    a: float,
    kept_shift: float,
    dropped_value: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`apply_keep_affine` given the mask's stream ``words`` (int64, the mask's shape,
    broadcastable to ``x``): how a backend that draws the words itself finishes with the
    reference's own operations (so its bits are the reference's by construction)."""
    acc = accumulation_dtype(x.dtype)
    kept = words >= threshold
    multiplier = torch.where(kept, _scalar(a, acc, x.device), _scalar(0.0, acc, x.device))
    shift = torch.where(
        kept, _scalar(kept_shift, acc, x.device), _scalar(dropped_value, acc, x.device)
    )
    return _written((x.to(acc) * multiplier).add_(shift).to(x.dtype), out)


def _scalar(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


def _written(result: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return result
    out.copy_(result)
    return out


def keep_multiplier(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The multiplier tensor of ``shape``: ``scale`` where the stream word is ``>= threshold``,
    else 0, in ``dtype`` (``scale`` is rounded to ``dtype`` once)."""
    words = rng.stream_words(math.prod(shape), seed, offset, device=device).reshape(tuple(shape))
    return torch.where(
        words >= threshold,
        torch.tensor(scale, dtype=dtype, device=words.device),
        torch.tensor(0.0, dtype=dtype, device=words.device),
    )


def bias_dropout_add(
    x: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``out = residual + (x + bias) * multiplier`` (the fused bias-dropout-add of transformers).

    ``bias`` has the trailing shape of ``x`` (usually ``(hidden,)``) and is broadcast over the
    leading dimensions; ``residual`` has ``x``'s shape. The multiplier of element ``i`` is that of
    :func:`apply_keep_mask` (the mask indexes ``x``'s row-major elements). Three roundings, each to
    nearest even in the accumulation dtype, in this order: ``t = x + bias``, ``y = t * m``,
    ``z = residual + y``; then ``z`` is rounded once to ``x.dtype``. Fast backends must not contract
    the multiply and the add into a fused multiply-add.
    """
    acc = accumulation_dtype(x.dtype)
    multiplier = keep_multiplier(x.shape, seed, offset, threshold, scale, acc, x.device)
    result = (residual.to(acc) + (x.to(acc) + bias.to(acc)) * multiplier).to(x.dtype)
    return _written(result, out)


def _grow(seeds: torch.Tensor, sizes: list[int], starts: list[int], spatial) -> torch.Tensor:
    """The blocks ``[j, j + k)`` of every seed at ``j`` (per spatial dimension), seen from ``start``
    on over the map's length: a separable dilation by shifted ORs of the seed map, each dimension
    padded by ``k - 1`` zero slices (a shift never carries a slice past its own padding)."""
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
            flat_grown[shift * stride :].bitwise_or_(flat[: -shift * stride])
        out = grown.narrow(dim, start, length)
    return out.view(torch.bool)


def blocks(x, seed, offset, affine, threshold, sizes, per_channel, clip, normalize, eps, noise):
    """DropBlock (``dropkit::blocks``) on ``x`` of shape ``(N, C, *S)``, in ``x``'s layout.

    The seed map ``(N, C', *S)`` (``C' = C`` with ``per_channel``, else 1): element ``k`` is a seed
    iff its stream word (index ``k + offset``) is ``< threshold`` and, unless ``clip``, its
    position lies in ``[a_d, S_d - k_d + a_d]`` (``a_d = k_d // 2``, ``k_d = sizes[d]``). A seed
    at ``i`` drops ``[i_d - a_d, i_d - a_d + k_d)`` clipped to the map: ``M`` is 0 there, 1
    elsewhere. The result is ``x * M * s`` with, in the accumulation dtype, ``kept = float(count of
    M == 1) * R`` (``R = C / C'``: a shared mask counts once per channel), ``s = (1 / (eps +
    kept)) * (total * R)`` over each sample (``"sample"``) or the batch (``"batch"``), ``s = 1``
    for ``"none"``; with ``noise``, ``x * M + z (1 - M)`` (``z``: the standard normals of ``x``'s
    logical elements from variate ``(offset + N C' prod(S) + 1) // 2``; with ``affine=False``,
    the gradient's ``x * M``). Products in the accumulation dtype, rounded once to ``x.dtype``."""
    n, c, spatial = x.shape[0], x.shape[1], list(x.shape[2:])
    acc = accumulation_dtype(x.dtype)
    seed_shape = [n, c if per_channel else 1, *spatial]
    words = math.prod(seed_shape)
    seeds = (rng.stream_words(words, seed, offset, x.device) < threshold).reshape(seed_shape)
    if clip:  # a seed at i covers [i - a, i - a + k), a = k // 2, clipped to the map
        dropped = _grow(seeds, sizes, [k // 2 for k in sizes], spatial)
    else:  # seeds only where the whole block fits: region index j covers [j, j + k)
        region = (slice(None), slice(None)) + tuple(
            slice(k // 2, k // 2 + s - k + 1) for s, k in zip(spatial, sizes)
        )
        dropped = _grow(seeds[region], sizes, [0] * len(sizes), spatial)
    zero, one = _scalar(0.0, acc, x.device), _scalar(1.0, acc, x.device)
    out = torch.empty_like(x)
    if noise:
        keep = torch.where(dropped, zero, one)
        if not affine:
            return torch.mul(x, keep, out=out)
        z = normal(tuple(x.shape), seed, (offset + words + 1) // 2, x.device, acc)
        return out.copy_((x.to(acc) * keep).add_(torch.where(dropped, z, zero)))
    repeat = 1 if per_channel else c
    if normalize == "sample":
        per = dropped[0].numel()
        kept = (per - dropped.reshape(n, -1).sum(1)).to(acc) * repeat
        scale = (per * repeat / (eps + kept)).reshape(n, *([1] * (x.dim() - 1)))
    elif normalize == "batch":
        kept = (dropped.numel() - torch.count_nonzero(dropped)).to(acc) * repeat
        scale = dropped.numel() * repeat / (eps + kept)
    else:
        scale = one
    return torch.mul(x, torch.where(dropped, zero, scale), out=out)
