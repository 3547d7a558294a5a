"""The fast CPU dropout kernel: numba, parallel over blocks, bit-identical to the reference.

Importing this module compiles nothing; the first call compiles (or loads from numba's on-disk
cache, ``cache=True``) the kernels for the dtypes used. Work is split into blocks of
``_BLOCK_GROUPS`` Philox counters; each block first fills a small buffer with its stream words (a
branch-free loop that LLVM vectorises) and then applies the multipliers (a select and a multiply,
vectorised too). The result is a pure function of (seed, offset, index), so it does not depend
on the thread count or on how blocks are scheduled.

float32 and float64 are processed natively. float16 and bfloat16 are widened to float32 in chunks,
multiplied by the float32 kernel and rounded back by torch, which is exactly the reference
definition (product in float32, one round-to-nearest-even to the input dtype).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from dropkit import rng

__all__ = ["SUPPORTED_DTYPES", "apply_keep_mask"]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Words are kept in uint32 lanes (16 per AVX-512 register) and only the two products are widened
# to uint64: about 1.3x faster than carrying every word in uint64.
_M0 = np.uint64(rng.PHILOX_M0)
_M1 = np.uint64(rng.PHILOX_M1)
_W0 = np.uint32(rng.PHILOX_W0)
_W1 = np.uint32(rng.PHILOX_W1)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)

# 1024 counters = 4096 elements a block: large enough to amortise scheduling, small enough that the
# word buffer (16 KiB) stays in L1/L2 between the two passes.
_BLOCK_GROUPS = 1024
# Below this many elements the parallel launch costs more than it saves.
_PARALLEL_MIN_NUMEL = 1 << 16
# float16/bfloat16 are widened in chunks of this many elements to bound the temporary memory.
_HALF_CHUNK = 1 << 20


@njit(inline="always", cache=True)
def _fill_words(words, first_group, n_groups, k0, k1):
    for g in range(n_groups):
        counter = np.uint64(first_group + g)
        c0 = np.uint32(counter & _MASK32)
        c1 = np.uint32(counter >> _SHIFT32)
        c2 = np.uint32(0)
        c3 = np.uint32(0)
        key0 = k0
        key1 = k1
        for r in range(10):
            if r > 0:
                key0 = np.uint32(key0 + _W0)
                key1 = np.uint32(key1 + _W1)
            prod0 = np.uint64(c0) * _M0
            prod1 = np.uint64(c2) * _M1
            next0 = np.uint32(prod1 >> _SHIFT32) ^ c1 ^ key0
            next2 = np.uint32(prod0 >> _SHIFT32) ^ c3 ^ key1
            c1 = np.uint32(prod1)
            c3 = np.uint32(prod0)
            c0 = next0
            c2 = next2
        words[4 * g] = c0
        words[4 * g + 1] = c1
        words[4 * g + 2] = c2
        words[4 * g + 3] = c3


@njit(inline="always", cache=True)
def _apply_block(x, out, block, offset, k0, k1, threshold, scale, zero):
    n = x.size
    first_group = offset // 4 + block * _BLOCK_GROUPS
    end_group = min(first_group + _BLOCK_GROUPS, (offset + n + 3) // 4)
    words = np.empty(4 * _BLOCK_GROUPS, dtype=np.uint32)
    _fill_words(words, first_group, end_group - first_group, k0, k1)
    start = max(4 * first_group - offset, 0)
    stop = min(4 * end_group - offset, n)
    shift = offset - 4 * first_group
    for i in range(start, stop):
        out[i] = x[i] * (scale if words[i + shift] >= threshold else zero)


@njit(parallel=True, cache=True)
def _apply_parallel(x, out, offset, k0, k1, threshold, scale, zero):
    n_groups = (offset + x.size + 3) // 4 - offset // 4
    n_blocks = (n_groups + _BLOCK_GROUPS - 1) // _BLOCK_GROUPS
    for block in prange(n_blocks):
        _apply_block(x, out, block, offset, k0, k1, threshold, scale, zero)


@njit(cache=True)
def _apply_serial(x, out, offset, k0, k1, threshold, scale, zero):
    n_groups = (offset + x.size + 3) // 4 - offset // 4
    n_blocks = (n_groups + _BLOCK_GROUPS - 1) // _BLOCK_GROUPS
    for block in range(n_blocks):
        _apply_block(x, out, block, offset, k0, k1, threshold, scale, zero)


def _run(x: np.ndarray, out: np.ndarray, seed: int, offset: int, threshold: int, scale) -> None:
    k0, k1 = rng.split_seed(seed)
    kernel = _apply_parallel if x.size >= _PARALLEL_MIN_NUMEL else _apply_serial
    zero = scale.dtype.type(0)
    kernel(x, out, offset, np.uint32(k0), np.uint32(k1), np.uint64(threshold), scale, zero)


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.kernels.reference.apply_keep_mask`; CPU tensors only.

    ``x`` must be contiguous; ``out``, if given, must be contiguous with ``x``'s shape and dtype.
    """
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.numel() == 0:
        return out
    if x.dtype in (torch.float32, torch.float64):
        np_dtype = np.float32 if x.dtype == torch.float32 else np.float64
        _run(
            x.detach().reshape(-1).numpy(),
            out.detach().reshape(-1).numpy(),
            seed,
            offset,
            threshold,
            np_dtype(scale),
        )
        return out
    flat_x = x.detach().reshape(-1)
    flat_out = out.detach().reshape(-1)
    for start in range(0, flat_x.numel(), _HALF_CHUNK):
        chunk = flat_x[start : start + _HALF_CHUNK].float()
        buffer = chunk.numpy()
        _run(buffer, buffer, seed, offset + start, threshold, np.float32(scale))
        flat_out[start : start + _HALF_CHUNK].copy_(chunk)
    return out
