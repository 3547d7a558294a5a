"""Per-plane affine map on the CPU: ``out = x * scale[plane] + shift[plane]`` in one pass (numba).

Feature alpha dropout draws one (scale, shift) pair per (sample, channel) and applies it to every
element of that channel's plane. torch's broadcast ops need two passes over memory for it (a
multiply, then an in-place add); this kernel reads and writes each element once. The arithmetic is
the reference's, operation for operation in the input's dtype: the product is rounded, then the sum
(numba compiles without fast-math, so LLVM does not contract the two into a fused multiply-add);
float32 and float64 only, which is where the reference computes in the input dtype too.

Like :mod:`dropkit.kernels.numba_cpu`, importing this module compiles nothing; the first call
compiles or loads the kernels from numba's on-disk cache.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import carray, njit, prange

from dropkit.kernels._memory import empty_output
from dropkit.kernels.numba_cpu import _address_as_voidptr, use_parallel

__all__ = ["SUPPORTED_DTYPES", "applies", "plane_affine"]

SUPPORTED_DTYPES = (torch.float32, torch.float64)

# Elements per parallel work item: blocks, not planes, so that a few large planes still split
# across threads.
_BLOCK = 1 << 15


@njit(inline="always", cache=True)
def _apply_range(x, out, scale, shift, plane, start, stop):
    i = start
    while i < stop:
        p = i // plane
        end = min(stop, (p + 1) * plane)
        s = scale[p]
        b = shift[p]
        # Slices indexed from 0 by a range: provably non-negative indices, which lets LLVM
        # vectorise (numba's wrap-around check on ``x[j]`` keeps the loop scalar).
        src = x[i:end]
        dst = out[i:end]
        for j in range(end - i):
            dst[j] = src[j] * s + b
        i = end


@njit(parallel=True, cache=True)
def _apply_parallel(x, out, scale, shift, plane):
    n = x.size
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        start = block * _BLOCK
        _apply_range(x, out, scale, shift, plane, start, min(start + _BLOCK, n))


@njit(cache=True)
def _apply_serial(x, out, scale, shift, plane):
    _apply_range(x, out, scale, shift, plane, 0, x.size)


@njit(inline="always", cache=True)
def _apply(x, out, scale, shift, plane, parallel):
    if parallel:
        _apply_parallel(x, out, scale, shift, plane)
    else:
        _apply_serial(x, out, scale, shift, plane)


# One entry per dtype: ``carray`` needs its dtype when the function is compiled.
@njit(cache=True)
def _entry_float32(x_address, out_address, n, scale, shift, plane, parallel):
    x = carray(_address_as_voidptr(x_address), (n,), np.float32)
    out = carray(_address_as_voidptr(out_address), (n,), np.float32)
    _apply(x, out, scale, shift, plane, parallel)


@njit(cache=True)
def _entry_float64(x_address, out_address, n, scale, shift, plane, parallel):
    x = carray(_address_as_voidptr(x_address), (n,), np.float64)
    out = carray(_address_as_voidptr(out_address), (n,), np.float64)
    _apply(x, out, scale, shift, plane, parallel)


def applies(x: torch.Tensor, mask_shape: list[int]) -> bool:
    """Whether a mask of ``mask_shape`` gives one value per plane of ``x`` that this kernel can
    take: ``x`` contiguous float32/64 on the CPU, the mask equal to ``x``'s shape on leading
    dimensions and 1 on the rest."""
    if not (
        x.dtype in SUPPORTED_DTYPES
        and x.is_cpu
        and x.is_contiguous()
        and len(mask_shape) == x.dim()
    ):
        return False
    lead = 0
    while lead < x.dim() and mask_shape[lead] == x.shape[lead]:
        lead += 1
    return all(size == 1 for size in mask_shape[lead:])


def plane_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale[p] + shift[p]`` for every element of plane ``p`` of contiguous ``x``.

    The planes are the ``scale.numel()`` equal consecutive slices of ``x`` (for an ``(N, C, ...)``
    tensor and ``(N, C)`` parameters: one per sample and channel). ``scale`` and ``shift`` must have
    ``x``'s dtype (float32 or float64). Returns a new contiguous tensor.
    """
    planes = scale.numel()
    if x.dtype not in SUPPORTED_DTYPES or scale.dtype != x.dtype or shift.dtype != x.dtype:
        raise TypeError(
            f"plane_affine needs float32 or float64 tensors of one dtype, got x {x.dtype}, "
            f"scale {scale.dtype}, shift {shift.dtype}"
        )
    if not (x.is_cpu and x.is_contiguous()) or shift.numel() != planes:
        raise ValueError("plane_affine needs a contiguous CPU x and one scale and shift per plane")
    n = x.numel()
    if planes == 0 or n % planes:
        raise ValueError(f"x's {n} elements do not split into {planes} equal planes")
    out = empty_output(x)
    if n == 0:
        return out
    entry = _entry_float32 if x.dtype == torch.float32 else _entry_float64
    scale_np = scale.detach().contiguous().reshape(-1).numpy()
    shift_np = shift.detach().contiguous().reshape(-1).numpy()
    entry(x.data_ptr(), out.data_ptr(), n, scale_np, shift_np, n // planes, use_parallel(n))
    return out
