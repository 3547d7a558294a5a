"""The fast CPU dropout kernel: numba, parallel over blocks, bit-identical to the reference.

Importing this module compiles nothing; the first call compiles (or loads from numba's on-disk
cache, ``cache=True``) the kernels for the dtypes used.

Design (measured on a 2-core AVX-512 Xeon; 2^22 float32 elements, one thread):

- Generation and application are *fused*: each Philox counter's four words are compared and
  applied to their four elements straight from registers. LLVM vectorises the counter loop
  (8 counters per zmm register, ``vpmuludq``); the stride-4 element accesses become gathers and
  scatters. 2.0 ms, against 2.7 ms for writing the words to a buffer and applying them in a second
  pass, and 1.1 ms for a plain copy.
- Every index in the hot loop is a ``range`` index into a slice, so it is provably non-negative:
  numba's wrap-around handling of a possibly negative index (``words[i + shift]``) kept the apply
  loop scalar and cost 2x.
- Counters whose four elements are not all inside the tensor (at most one at each end, when
  ``offset`` or the size is not a multiple of 4) go through a scalar edge path, so the hot loop
  has no bounds logic.
- Philox itself is bound by the vector multiplier/shift port (20 ``vpmuludq`` + 20 ``vpsrlq`` per
  8 counters): AVX2 code runs at the same speed, and 32- vs 64-bit threshold lanes make no
  difference. So, at ~0.5 ns per element per core, a large tensor costs about 1.5x a copy on two
  cores; dynamic scheduling (``numba.parallel_chunksize``) and other block sizes were no faster.
- In-place calls (``out is x``) have kernels of their own: with two array arguments LLVM guards
  the vectorised loop with an overlap check that fails for ``out is x`` and falls back to scalar
  code (4x slower).
- The entry points take the tensors' addresses and plain Python numbers, not numpy arrays and
  numpy scalars: that saves 7 us a call, 30 us when a preceding matmul has evicted the
  interpreter's working set from the caches (as in every MLP layer).

The result is a pure function of (seed, offset, index): it does not depend on the thread count, the
block size or the scheduling. float32 and float64 are processed natively. float16 and bfloat16 are
widened to float32 in chunks by torch, multiplied by the float32 kernel in place and rounded back by
torch, which is exactly the reference definition (product in float32, one round-to-nearest-even to
the input dtype).
"""

from __future__ import annotations

import threading

import numba
import numpy as np
import torch
from numba import carray, njit, prange, types
from numba.extending import intrinsic

from dropkit import rng
from dropkit.kernels._memory import empty_output

__all__ = ["SUPPORTED_DTYPES", "apply_keep_mask", "match_threads", "use_parallel"]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Words are uint32 and only the two products are widened to uint64, so LLVM keeps each word in the
# low half of a 64-bit lane and the truncations cost nothing.
_M0 = np.uint64(rng.PHILOX_M0)
_M1 = np.uint64(rng.PHILOX_M1)
_W0 = np.uint32(rng.PHILOX_W0)
_W1 = np.uint32(rng.PHILOX_W1)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)

# Counters per parallel work item (4 elements each): large enough to amortise scheduling, small
# enough to balance two threads on small tensors.
_BLOCK_GROUPS = 1024
# Below this many elements a parallel launch costs more than it saves.
_PARALLEL_MIN_NUMEL = 1 << 16
# numba's team size is a per-thread setting; remember what this thread last set.
_THREADS = threading.local()
# float16/bfloat16 are widened in chunks of this many elements (a 1 MiB float32 buffer that stays
# in L2 between widening, kernel and narrowing; 2^16..2^20 were within 10% of each other).
_HALF_CHUNK = 1 << 18


@njit(inline="always", cache=True)
def _philox(counter, k0, k1):
    """Philox4x32-10 of the counter (counter & 0xffffffff, counter >> 32, 0, 0)."""
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
        # No uint32 casts here: numba types the XORs as uint64 with a zero upper half, and a cast
        # would make LLVM emit a truncation and re-extension every round (1.8x slower).
        c0 = next0
        c2 = next2
    return np.uint32(c0), np.uint32(c1), np.uint32(c2), np.uint32(c3)


@njit(inline="always", cache=True)
def _fill_words(words, first_group, n_groups, k0, k1):
    """``words[4 g + k]`` = word ``k`` of counter ``first_group + g``, for ``g < n_groups``.

    For kernels that need the raw words (e.g. :mod:`dropkit.kernels.numba_normal`)."""
    for g in range(n_groups):
        w0, w1, w2, w3 = _philox(np.uint64(first_group + g), k0, k1)
        words[4 * g] = w0
        words[4 * g + 1] = w1
        words[4 * g + 2] = w2
        words[4 * g + 3] = w3


@njit(inline="always", cache=True)
def _apply_groups(x, out, first_group, n_groups, k0, k1, threshold, scale, zero):
    """Fused hot loop: ``x[4 g + k]`` pairs with word ``k`` of counter ``first_group + g``."""
    for g in range(n_groups):
        w0, w1, w2, w3 = _philox(np.uint64(first_group + g), k0, k1)
        out[4 * g] = x[4 * g] * (scale if w0 >= threshold else zero)
        out[4 * g + 1] = x[4 * g + 1] * (scale if w1 >= threshold else zero)
        out[4 * g + 2] = x[4 * g + 2] * (scale if w2 >= threshold else zero)
        out[4 * g + 3] = x[4 * g + 3] * (scale if w3 >= threshold else zero)


@njit(inline="always", cache=True)
def _apply_edge(x, out, group, offset, k0, k1, threshold, scale, zero):
    """The elements of one counter that straddles either end of the tensor."""
    w0, w1, w2, w3 = _philox(np.uint64(group), k0, k1)
    for k in range(4):
        i = 4 * group + k - offset
        if 0 <= i < x.size:
            word = w0 if k == 0 else (w1 if k == 1 else (w2 if k == 2 else w3))
            out[i] = x[i] * (scale if word >= threshold else zero)


@njit(inline="always", cache=True)
def _edges(x, out, offset, k0, k1, threshold, scale, zero):
    """Apply the partial counters at both ends; return (first full counter, number of full ones)."""
    n = x.size
    first = offset // 4
    end = (offset + n + 3) // 4
    full_lo = (offset + 3) // 4
    full_hi = (offset + n) // 4
    if full_hi <= full_lo:  # no counter lies wholly inside: a tiny tensor
        for group in range(first, end):
            _apply_edge(x, out, group, offset, k0, k1, threshold, scale, zero)
        return full_lo, 0
    if first < full_lo:
        _apply_edge(x, out, first, offset, k0, k1, threshold, scale, zero)
    if end > full_hi:
        _apply_edge(x, out, full_hi, offset, k0, k1, threshold, scale, zero)
    return full_lo, full_hi - full_lo


@njit(parallel=True, cache=True)
def _apply_parallel(x, out, offset, k0, k1, threshold, scale, zero):
    full_lo, n_full = _edges(x, out, offset, k0, k1, threshold, scale, zero)
    base = 4 * full_lo - offset
    n_blocks = (n_full + _BLOCK_GROUPS - 1) // _BLOCK_GROUPS
    for block in prange(n_blocks):
        lo = block * _BLOCK_GROUPS
        hi = min(lo + _BLOCK_GROUPS, n_full)
        # Slices so that every hot-loop index is a non-negative range index (see module doc).
        xs = x[base + 4 * lo : base + 4 * hi]
        outs = out[base + 4 * lo : base + 4 * hi]
        _apply_groups(xs, outs, full_lo + lo, hi - lo, k0, k1, threshold, scale, zero)


@njit(cache=True)
def _apply_serial(x, out, offset, k0, k1, threshold, scale, zero):
    full_lo, n_full = _edges(x, out, offset, k0, k1, threshold, scale, zero)
    base = 4 * full_lo - offset
    xs = x[base : base + 4 * n_full]
    outs = out[base : base + 4 * n_full]
    _apply_groups(xs, outs, full_lo, n_full, k0, k1, threshold, scale, zero)


# In-place variants: with distinct ``x`` and ``out`` arguments LLVM guards the vectorised loop with
# a runtime overlap check, which fails when they are the same array and falls back to scalar code
# (4x slower). Passing one array twice lets LLVM see that every element is read before it is
# written.
@njit(parallel=True, cache=True)
def _apply_parallel_inplace(x, offset, k0, k1, threshold, scale, zero):
    full_lo, n_full = _edges(x, x, offset, k0, k1, threshold, scale, zero)
    base = 4 * full_lo - offset
    n_blocks = (n_full + _BLOCK_GROUPS - 1) // _BLOCK_GROUPS
    for block in prange(n_blocks):
        lo = block * _BLOCK_GROUPS
        hi = min(lo + _BLOCK_GROUPS, n_full)
        xs = x[base + 4 * lo : base + 4 * hi]
        _apply_groups(xs, xs, full_lo + lo, hi - lo, k0, k1, threshold, scale, zero)


@njit(cache=True)
def _apply_serial_inplace(x, offset, k0, k1, threshold, scale, zero):
    full_lo, n_full = _edges(x, x, offset, k0, k1, threshold, scale, zero)
    base = 4 * full_lo - offset
    xs = x[base : base + 4 * n_full]
    _apply_groups(xs, xs, full_lo, n_full, k0, k1, threshold, scale, zero)


@intrinsic
def _address_as_voidptr(typingctx, address):
    """Reinterpret an integer address (``Tensor.data_ptr()``) as a ``void*`` for ``carray``."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(address), codegen


@njit(inline="always", cache=True)
def _dispatch(x, out, in_place, parallel, offset, k0, k1, threshold, scale, zero):
    if parallel:
        if in_place:
            _apply_parallel_inplace(x, offset, k0, k1, threshold, scale, zero)
        else:
            _apply_parallel(x, out, offset, k0, k1, threshold, scale, zero)
    elif in_place:
        _apply_serial_inplace(x, offset, k0, k1, threshold, scale, zero)
    else:
        _apply_serial(x, out, offset, k0, k1, threshold, scale, zero)


# Entry points take addresses and plain Python ints/floats (see the module docstring for why).
@njit(cache=True)
def _entry_float32(x_address, out_address, n, parallel, offset, k0, k1, threshold, scale):
    x = carray(_address_as_voidptr(x_address), (n,), np.float32)
    out = carray(_address_as_voidptr(out_address), (n,), np.float32)
    in_place = x_address == out_address
    _dispatch(
        x,
        out,
        in_place,
        parallel,
        offset,
        np.uint32(k0),
        np.uint32(k1),
        np.uint64(threshold),
        np.float32(scale),
        np.float32(0.0),
    )


@njit(cache=True)
def _entry_float64(x_address, out_address, n, parallel, offset, k0, k1, threshold, scale):
    x = carray(_address_as_voidptr(x_address), (n,), np.float64)
    out = carray(_address_as_voidptr(out_address), (n,), np.float64)
    in_place = x_address == out_address
    _dispatch(
        x,
        out,
        in_place,
        parallel,
        offset,
        np.uint32(k0),
        np.uint32(k1),
        np.uint64(threshold),
        np.float64(scale),
        np.float64(0.0),
    )


def match_threads() -> int:
    """Set numba's team size to torch's thread count (capped by numba's) and return it.

    numba and torch each keep their own OpenMP team. A numba team larger than
    ``torch.get_num_threads()`` oversubscribes the cores whenever the user (or a worker process)
    has restricted torch, and spinning OpenMP threads then wait on each other: measured here, an
    MLP trained with ``torch.set_num_threads(1)`` beside another busy process ran 9x slower.
    """
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if getattr(_THREADS, "count", None) != threads:
        numba.set_num_threads(threads)
        _THREADS.count = threads
    return threads


def use_parallel(numel: int) -> bool:
    """Whether a kernel over ``numel`` elements runs in parallel (see :func:`match_threads`)."""
    return numel >= _PARALLEL_MIN_NUMEL and match_threads() >= 2


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.kernels.reference.apply_keep_mask`; CPU tensors only.

    ``x`` must be contiguous; ``out``, if given, must be contiguous with ``x``'s shape and dtype
    (it may be ``x`` itself).
    """
    if out is None:
        out = empty_output(x)
    n = x.numel()
    # The kernels write through raw addresses: refuse anything they could not index safely.
    if not (x.is_cpu and out.is_cpu and x.is_contiguous() and out.is_contiguous()):
        raise ValueError("numba_cpu.apply_keep_mask needs contiguous CPU tensors")
    if out.dtype != x.dtype or out.numel() != n:
        raise ValueError(
            f"out must match x: got {out.dtype} with {out.numel()} elements for {x.dtype} with {n}"
        )
    if n == 0:
        return out
    k0, k1 = rng.split_seed(seed)
    parallel = use_parallel(n)
    if x.dtype == torch.float32:
        _entry_float32(x.data_ptr(), out.data_ptr(), n, parallel, offset, k0, k1, threshold, scale)
        return out
    if x.dtype == torch.float64:
        _entry_float64(x.data_ptr(), out.data_ptr(), n, parallel, offset, k0, k1, threshold, scale)
        return out
    flat_x = x.detach().reshape(-1)
    flat_out = out.detach().reshape(-1)
    # One reused buffer: a fresh .float() per chunk page-faults its memory in every time, which
    # cost more than the widening, the kernel and the narrowing together.
    buffer = torch.empty(min(n, _HALF_CHUNK), dtype=torch.float32)
    address = buffer.data_ptr()
    for start in range(0, n, _HALF_CHUNK):
        stop = min(start + _HALF_CHUNK, n)
        chunk = buffer[: stop - start]
        chunk.copy_(flat_x[start:stop])
        size = stop - start
        parallel = use_parallel(size)
        _entry_float32(address, address, size, parallel, offset + start, k0, k1, threshold, scale)
        flat_out[start:stop].copy_(chunk)
    return out
