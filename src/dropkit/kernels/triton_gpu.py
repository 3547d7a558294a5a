"""The Triton backend: dropkit's stream and kernels for CUDA tensors, bit-identical to reference.

Same contract as :mod:`dropkit.kernels.reference` (which defines the semantics bit for bit):
:func:`apply_keep_mask`, :func:`apply_keep_affine`, :func:`stream_words`, :func:`normal` and
:func:`bias_dropout_add`, plus :func:`available`. The stream is the one of :mod:`dropkit.rng`
(Philox4x32-10, Salmon et al., SC'11): element ``i`` at offset ``o`` reads word ``j % 4`` of the
counter ``(j // 4 & 0xffffffff, j // 4 >> 32, 0, 0)`` under the key ``(seed lo, seed hi)``,
``j = i + o``.

Layout on the GPU. A program owns ``_GROUPS`` consecutive counters ``g`` (64-bit, split in two
32-bit words) and evaluates Philox once per counter. It works on ``[_GROUPS, 4]`` blocks whose row
``r`` is the four elements of counter ``r``, so each thread owns whole rows: the four words go to
their elements without a shuffle through shared memory, and loads and stores are 16 bytes wide
when the stream is aligned. The first program starts ``offset % 4`` elements before element 0
(``SHIFT``, a compile-time constant: ``offset % 4 == 0`` keeps the vector loads; other shifts
compile to 4-byte accesses and a layout change through shared memory). Every
element index is masked to ``[0, numel)``. The result depends on nothing but
``(seed, offset, index)``: not on the grid, the block size or the warp count.

Exactness:

- the multiplier is ``scale`` rounded once to the accumulation dtype (float64 for float64 inputs,
  float32 otherwise), or 0; the product is formed in that dtype and rounded once (to nearest even)
  to the output dtype, as in the reference. A dropped element is multiplied by zero, so a NaN
  stays NaN and a dropped Inf becomes NaN, as in ``torch.nn.functional.dropout``.
- kernels are launched with ``enable_fp_fusion=False``: Triton then emits separate ``mul.rn`` and
  ``add.rn`` instructions and runs ``ptxas --fmad=false``, so ``bias_dropout_add`` keeps the
  reference's three roundings (``t = x + bias``, ``y = t * m``, ``z = residual + y``) instead of a
  fused multiply-add. (With fusion enabled, Triton's default, the same kernel compiles to
  ``fma.rn.f32``.)
- alpha dropout's affine map (``x * M + B``) is one pass too (``_keep_affine_kernel``): ``a``,
  ``kept_shift`` and ``dropped_value`` rounded once to the accumulation dtype, the product and
  then the sum each rounded in it (never contracted: see above), then once to the output dtype.
- broadcast masks (``mask_shape``: channel dropout channels-first and channels-last, drop-path,
  locked dropout) are one pass over ``x`` (``_broadcast_kernel``, for the keep mask and the affine
  map alike): ``x`` is seen as ``[a][b][c]`` (:func:`broadcast_pattern`, the decomposition of the
  C++ ``broadcast_kernel``), mask element ``(i, k)`` is stream element ``i c + k`` and serves
  ``x[i, j, k]`` for every ``j``. A program owns a ``[BLOCK_I, BLOCK_J, BLOCK_K]`` tile and
  evaluates Philox once per mask element of the tile, broadcast over its ``BLOCK_J`` rows. A mask
  broadcast along two separate groups of dimensions (not of that form, e.g. a
  ``broadcast_dropout`` noise shape ``(N, 1, C, 1)``) draws its multipliers (or words) with the
  kernels and finishes with torch on the device.
- :func:`normal` computes the two uniforms of each variate in Triton (exact: a 24-bit integer
  times ``2**-24`` in float64) and finishes with the very torch operations of
  :func:`dropkit.rng.normal` on the same device, because Triton's ``log``/``cos`` (libdevice) are
  not guaranteed to round like torch's.

Philox is written out here with ``tl.umulhi`` (the same rounds as ``tl.philox``), not called
through ``tl.philox``: Triton decides between compiling and interpreting (``TRITON_INTERPRET=1``)
when a function is decorated with ``@triton.jit``, and ``tl.philox`` is decorated when ``triton`` is
first imported, so it would follow the setting of whoever imported Triton first. This module
decorates its kernels on first use and again whenever ``TRITON_INTERPRET`` has changed since, so the
interpreter (CPU tensors, used by the tests) and the compiler (CUDA tensors) both work whatever the
import order.

Triton is imported on first use, never at import: dropkit works without Triton installed, and
:func:`available` then says ``False``.
"""

from __future__ import annotations

import functools
import inspect
import math
import struct
import threading
import warnings

import torch

from dropkit import rng
from dropkit.kernels import MAX_STREAM_INDEX, reference

__all__ = [
    "LAUNCH_OPTIONS",
    "SUPPORTED_DTYPES",
    "apply_keep_affine",
    "apply_keep_mask",
    "available",
    "bias_dropout_add",
    "normal",
    "stream_words",
]

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Philox counters per program (4 elements each). Not tuned on a GPU: no GPU was available when
# this backend was written (docs/design/gpu.md).
_GROUPS = 256
# The broadcast kernel's tile: at most this many elements, at most _BROADCAST_K of them along the
# trailing masked group. Chosen, not tuned (no GPU either).
_BROADCAST_TILE = 2048
_BROADCAST_K = 256
# Every launch passes these; ``enable_fp_fusion=False`` is what keeps the roundings of the
# reference (see the module docstring; tests compile the kernels with it and read the PTX).
LAUNCH_OPTIONS = {"num_warps": 4, "enable_fp_fusion": False}

_STREAM_END = MAX_STREAM_INDEX  # the bound every backend shares
_THRESHOLD_MAX = 2**32

# Bound on first use by _load(); the kernel bodies below read them as globals.
triton = None
tl = None
_lock = threading.Lock()
_built_for: bool | None = None  # the TRITON_INTERPRET setting the kernels were decorated under


def _import_triton() -> bool:
    global triton, tl
    if triton is None:
        try:
            import triton as triton_module
            import triton.language as language
        except ImportError:
            return False
        triton, tl = triton_module, language
    return True


def _require_triton() -> None:
    if not _import_triton():
        raise RuntimeError(
            "dropkit's Triton backend needs the 'triton' package: pip install triton"
        )


def _interpreting() -> bool:
    """Whether ``@triton.jit`` makes interpreted functions now (``TRITON_INTERPRET=1``, or
    ``triton.knobs.runtime.interpret`` set in code): exactly what Triton itself consults."""
    return bool(triton.knobs.runtime.interpret)


def available() -> bool:
    """Whether this backend can run: Triton importable and a CUDA device present, or Triton's
    interpreter switched on (``TRITON_INTERPRET=1``, which runs the kernels on CPU tensors)."""
    if not _import_triton():
        return False
    return _interpreting() or torch.cuda.is_available()


# --------------------------------------------------------------------------------------------
# Kernels, written in Triton's language. They are plain functions until _load() decorates them
# (and binds ``tl``), so that importing this module needs no Triton.
# --------------------------------------------------------------------------------------------


def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of the counter ``(c0, c1, c2, c3)`` under the key ``(k0, k1)``, all uint32
    (blocks or scalars); the four output words. The round of :func:`dropkit.rng.philox4x32_torch`.
    """
    # Triton's interpreter types scalar arguments by value, not by annotation: cast explicitly.
    c0 = c0.to(tl.uint32)
    c1 = c1.to(tl.uint32)
    c2 = c2.to(tl.uint32)
    c3 = c3.to(tl.uint32)
    k0 = k0.to(tl.uint32)
    k1 = k1.to(tl.uint32)
    for _ in tl.static_range(10):
        # 32x32 -> 64-bit products as (high, low) words; every sum and product wraps mod 2**32.
        hi0 = tl.umulhi(c0, 0xD2511F53)
        lo0 = tl.mul(c0, 0xD2511F53, sanitize_overflow=False)
        hi1 = tl.umulhi(c2, 0xCD9E8D57)
        lo1 = tl.mul(c2, 0xCD9E8D57, sanitize_overflow=False)
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = tl.add(k0, 0x9E3779B9, sanitize_overflow=False)
        k1 = tl.add(k1, 0xBB67AE85, sanitize_overflow=False)
    return c0, c1, c2, c3


def _element_index(
    SHIFT: tl.constexpr, GROUPS: tl.constexpr, WIDE: tl.constexpr, PER: tl.constexpr
):
    """This program's item indices as a ``[GROUPS, PER]`` block: row ``r`` holds the ``PER`` items
    of its Philox counter (4 stream words, or 2 normal variates), ``SHIFT`` items before item 0 for
    the first program. 2-D, so each thread owns whole rows: no shuffle between the Philox words and
    the loads, and 16-byte loads and stores where ``SHIFT == 0``."""
    if WIDE:
        start = tl.program_id(0).to(tl.int64) * (PER * GROUPS)
    else:
        start = tl.program_id(0) * (PER * GROUPS)
    return start - SHIFT + PER * tl.arange(0, GROUPS)[:, None] + tl.arange(0, PER)[None, :]


def _counters(k0, k1, first_group, GROUPS: tl.constexpr):
    """The four Philox words of this program's ``GROUPS`` counters, each a ``[GROUPS, 1]`` block."""
    first = first_group.to(tl.int64) + tl.program_id(0).to(tl.int64) * GROUPS
    g = first + tl.arange(0, GROUPS)[:, None]  # the 64-bit counter index j // 4, >= 0
    zero = tl.full(g.shape, 0, tl.uint32)
    return _philox(g & 0xFFFFFFFF, g >> 32, zero, zero, k0, k1)


def _stream_block(k0, k1, first_group, GROUPS: tl.constexpr):
    """The stream words of this program's elements, a ``[GROUPS, 4]`` block in element order."""
    w0, w1, w2, w3 = _counters(k0, k1, first_group, GROUPS)
    lane = tl.arange(0, 4)[None, :]
    return tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))


def _multiplier(words, threshold, scale_bits, ACC: tl.constexpr):
    """``scale`` (passed as the int64 bits of a float64, rounded once to ``ACC``) where the word
    is ``>= threshold``, else 0. The bits travel as an integer because a Python float argument is
    a float32 in Triton's interpreter and a float64 only where annotated in compiled code."""
    keep = words.to(tl.int64) >= threshold.to(tl.int64)
    scale = scale_bits.to(tl.int64).to(tl.float64, bitcast=True).to(ACC)
    return tl.where(keep, scale, tl.full(words.shape, 0.0, ACC))


def _widen(v, ACC: tl.constexpr):
    """``v`` in the accumulation dtype, exactly. bfloat16 widens through its bits: Triton's
    interpreter converts bfloat16 with its own (inexact) float emulation."""
    if v.dtype == tl.bfloat16:
        bits = v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16
        return bits.to(tl.float32, bitcast=True).to(ACC)
    return v.to(ACC)


def _narrow(v, DST: tl.constexpr):
    """``v`` rounded once, to nearest even, to ``DST``. float32 -> bfloat16 rounds on the bits (as
    torch does): Triton's interpreter truncates instead, while the GPU's ``cvt.rn`` rounds; the
    integer form gives the same bits in both. NaN stays a quiet NaN."""
    if tl.bfloat16 == DST:
        bits = v.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
        half = tl.where(is_nan, (bits >> 16) | 0x40, rounded)
        return half.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return v.to(DST)


def _words_kernel(
    out_ptr,
    n: tl.int64,
    k0: tl.uint32,
    k1: tl.uint32,
    first_group: tl.int64,
    SHIFT: tl.constexpr,
    GROUPS: tl.constexpr,
    WIDE: tl.constexpr,
):
    words = _stream_block(k0, k1, first_group, GROUPS)
    i = _element_index(SHIFT, GROUPS, WIDE, 4)
    inside = (i >= 0) & (i < n)
    tl.store(out_ptr + i, words.to(tl.int64), mask=inside)


def _keep_mask_kernel(
    x_ptr,
    out_ptr,
    n: tl.int64,
    k0: tl.uint32,
    k1: tl.uint32,
    first_group: tl.int64,
    threshold: tl.int64,
    scale_bits: tl.int64,
    SHIFT: tl.constexpr,
    GROUPS: tl.constexpr,
    WIDE: tl.constexpr,
    ACC: tl.constexpr,
):
    words = _stream_block(k0, k1, first_group, GROUPS)
    i = _element_index(SHIFT, GROUPS, WIDE, 4)
    inside = (i >= 0) & (i < n)
    multiplier = _multiplier(words, threshold, scale_bits, ACC)
    x = tl.load(x_ptr + i, mask=inside)
    y = _widen(x, ACC) * multiplier
    tl.store(out_ptr + i, _narrow(y, out_ptr.dtype.element_ty), mask=inside)


def _bias_dropout_add_kernel(
    x_ptr,
    bias_ptr,
    residual_ptr,
    out_ptr,
    n: tl.int64,
    bias_n: tl.int64,
    k0: tl.uint32,
    k1: tl.uint32,
    first_group: tl.int64,
    threshold: tl.int64,
    scale_bits: tl.int64,
    SHIFT: tl.constexpr,
    GROUPS: tl.constexpr,
    WIDE: tl.constexpr,
    ACC: tl.constexpr,
):
    words = _stream_block(k0, k1, first_group, GROUPS)
    i = _element_index(SHIFT, GROUPS, WIDE, 4)
    inside = (i >= 0) & (i < n)
    multiplier = _multiplier(words, threshold, scale_bits, ACC)
    x = _widen(tl.load(x_ptr + i, mask=inside), ACC)
    if WIDE:
        column = i % bias_n
    else:
        column = i % bias_n.to(tl.int32)  # a 32-bit remainder is much cheaper on a GPU
    bias = _widen(tl.load(bias_ptr + column, mask=inside), ACC)
    residual = _widen(tl.load(residual_ptr + i, mask=inside), ACC)
    # Three roundings in the reference's order; the launch forbids contracting them (no FMA).
    t = x + bias
    y = t * multiplier
    z = residual + y
    tl.store(out_ptr + i, _narrow(z, out_ptr.dtype.element_ty), mask=inside)


def _uniforms_kernel(
    u1_ptr,
    u2_ptr,
    n: tl.int64,
    k0: tl.uint32,
    k1: tl.uint32,
    first_group: tl.int64,
    SHIFT: tl.constexpr,
    GROUPS: tl.constexpr,
    WIDE: tl.constexpr,
):
    """Box-Muller uniforms of variates: variate ``v`` reads words ``2 v, 2 v + 1`` of the stream
    (a counter holds two variates); ``SHIFT`` is in variates here (0 or 1)."""
    w0, w1, w2, w3 = _counters(k0, k1, first_group, GROUPS)
    second_pair = tl.arange(0, 2)[None, :] == 1
    first = tl.where(second_pair, w2, w0)
    second = tl.where(second_pair, w3, w1)
    v = _element_index(SHIFT, GROUPS, WIDE, 2)
    inside = (v >= 0) & (v < n)
    u1 = ((first >> 8) + 1).to(tl.float64) * 5.9604644775390625e-08  # 2**-24, exact
    u2 = (second >> 8).to(tl.float64) * 5.9604644775390625e-08
    tl.store(u1_ptr + v, u1, mask=inside)
    tl.store(u2_ptr + v, u2, mask=inside)


def _keep_affine_kernel(
    x_ptr,
    out_ptr,
    n: tl.int64,
    k0: tl.uint32,
    k1: tl.uint32,
    first_group: tl.int64,
    threshold: tl.int64,
    mul_bits: tl.int64,
    kept_bits: tl.int64,
    dropped_bits: tl.int64,
    SHIFT: tl.constexpr,
    GROUPS: tl.constexpr,
    WIDE: tl.constexpr,
    ACC: tl.constexpr,
):
    """Alpha dropout's ``x * M + B`` with a mask of ``x``'s shape: the layout of
    ``_keep_mask_kernel``, two roundings in ``ACC`` (the launch forbids contracting them)."""
    words = _stream_block(k0, k1, first_group, GROUPS)
    i = _element_index(SHIFT, GROUPS, WIDE, 4)
    inside = (i >= 0) & (i < n)
    x = _widen(tl.load(x_ptr + i, mask=inside), ACC)
    y = _affine(x, words, threshold, mul_bits, kept_bits, dropped_bits, ACC)
    tl.store(out_ptr + i, _narrow(y, out_ptr.dtype.element_ty), mask=inside)


def _affine(x, words, threshold, mul_bits, kept_bits, dropped_bits, ACC: tl.constexpr):
    """``x * M + B`` in ``ACC``: ``(M, B) = (a, kept_shift)`` where the word is ``>= threshold``,
    ``(0, dropped_value)`` elsewhere (the three values travel as float64 bits, rounded once to
    ``ACC``). Product, then sum: two roundings, as :func:`reference.affine_from_words`."""
    keep = words.to(tl.int64) >= threshold.to(tl.int64)
    a = mul_bits.to(tl.int64).to(tl.float64, bitcast=True).to(ACC)
    kept = kept_bits.to(tl.int64).to(tl.float64, bitcast=True).to(ACC)
    dropped = dropped_bits.to(tl.int64).to(tl.float64, bitcast=True).to(ACC)
    m = tl.where(keep, a, tl.full(words.shape, 0.0, ACC))
    b = tl.where(keep, kept, dropped)
    product = x * m
    return product + b


def _broadcast_kernel(
    x_ptr,
    out_ptr,
    a: tl.int64,
    b: tl.int64,
    c: tl.int64,
    offset: tl.int64,
    k0: tl.uint32,
    k1: tl.uint32,
    threshold: tl.int64,
    mul_bits: tl.int64,
    kept_bits: tl.int64,
    dropped_bits: tl.int64,
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_K: tl.constexpr,
    AFFINE: tl.constexpr,
    UNIT_C: tl.constexpr,
    WIDE: tl.constexpr,
    ACC: tl.constexpr,
):
    """A broadcast mask in one pass: ``x`` (contiguous) as ``[a][b][c]``, mask element
    ``(i, k)`` is stream element ``i c + k`` (at ``offset``) and serves ``x[i, j, k]`` for every
    ``j``. A program owns a ``[BLOCK_I, BLOCK_J, BLOCK_K]`` tile; it evaluates Philox once per
    mask element of its tile (``BLOCK_I * BLOCK_K`` of them) and broadcasts the multipliers over
    the tile's ``BLOCK_J`` rows. ``AFFINE``: alpha dropout's ``x * M + B`` instead of
    ``x * (scale or 0)`` (``mul_bits`` is then ``a``)."""
    if WIDE:
        pid = tl.program_id(0).to(tl.int64)
        a_ = a.to(tl.int64)
        b_ = b.to(tl.int64)
        c_ = c.to(tl.int64)
    else:
        pid = tl.program_id(0)
        a_ = a.to(tl.int32)
        b_ = b.to(tl.int32)
        c_ = c.to(tl.int32)
    # (not tl.cdiv: Triton decorates it at import, for the interpreter or not; see above)
    j_blocks = (b_ + BLOCK_J - 1) // BLOCK_J
    if UNIT_C:
        # c == 1 (channel dropout channels-first, drop-path; BLOCK_K == 1): a 2-D tile whose
        # rows are mask elements, contiguous along the last axis, so that accesses are vectorised
        # where b % 16 == 0 (a trailing axis of size 1 would keep them 4 bytes wide).
        jb = pid % j_blocks
        ib = pid // j_blocks
        i = ib * BLOCK_I + tl.arange(0, BLOCK_I)[:, None]
        j = jb * BLOCK_J + tl.arange(0, BLOCK_J)[None, :]
        mask_index = i  # [BLOCK_I, 1]
        index = i * b_ + j
        inside = (i < a_) & (j < b_)
    else:
        k_blocks = (c_ + BLOCK_K - 1) // BLOCK_K
        jb = pid % j_blocks  # the broadcast blocks vary fastest: neighbours share mask words
        rest = pid // j_blocks
        kb = rest % k_blocks
        ib = rest // k_blocks
        i = ib * BLOCK_I + tl.arange(0, BLOCK_I)[:, None, None]
        j = jb * BLOCK_J + tl.arange(0, BLOCK_J)[None, :, None]
        k = kb * BLOCK_K + tl.arange(0, BLOCK_K)[None, None, :]
        mask_index = i * c_ + k  # [BLOCK_I, 1, BLOCK_K]
        index = (i * b_ + j) * c_ + k
        inside = (i < a_) & (j < b_) & (k < c_)
    # The stream index of each mask element, 64-bit (offsets reach 2**63 - 1 - mask size).
    stream = mask_index.to(tl.int64) + offset.to(tl.int64)
    g = stream >> 2
    lane = stream & 3
    zero = tl.full(g.shape, 0, tl.uint32)
    w0, w1, w2, w3 = _philox(g & 0xFFFFFFFF, g >> 32, zero, zero, k0, k1)
    words = tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))
    x = _widen(tl.load(x_ptr + index, mask=inside), ACC)
    if AFFINE:
        y = _affine(x, words, threshold, mul_bits, kept_bits, dropped_bits, ACC)
    else:
        y = x * _multiplier(words, threshold, mul_bits, ACC)
    tl.store(out_ptr + index, _narrow(y, out_ptr.dtype.element_ty), mask=inside)


_HELPERS = (
    _philox,
    _element_index,
    _counters,
    _stream_block,
    _multiplier,
    _widen,
    _narrow,
    _affine,
)
_KERNELS = (
    _words_kernel,
    _keep_mask_kernel,
    _keep_affine_kernel,
    _broadcast_kernel,
    _bias_dropout_add_kernel,
    _uniforms_kernel,
)
_SOURCES = {fn.__name__: fn for fn in _HELPERS + _KERNELS}
# Scalars Triton must not specialise on (by default it compiles a variant for integers divisible
# by 16, or equal to 1): the seed's words, stream positions, thresholds and scale bits change
# from call to call, and a variant for each would compile again in the middle of training. Sizes
# (n, a, b, c, bias_n) stay specialised: divisibility by 16 keeps accesses vectorised.
_NO_SPECIALIZE = frozenset(
    ("k0", "k1", "first_group", "offset", "threshold", "scale_bits", "mul_bits", "kept_bits",
     "dropped_bits")
)  # fmt: skip


def _params(fn) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


_jitted: dict[str, object] = {}


def _load() -> dict[str, object]:
    """The decorated kernels, for the current ``TRITON_INTERPRET`` setting (see module doc)."""
    global _built_for
    _require_triton()
    interpret = _interpreting()
    with _lock:
        if _built_for is not interpret:
            jitted = {
                name: triton.jit(fn, do_not_specialize=sorted(_NO_SPECIALIZE & _params(fn)))
                for name, fn in _SOURCES.items()
            }
            # Kernels find their helpers through the module's globals, as Triton resolves names.
            globals().update({name: jitted[name] for name in _SOURCES})
            _jitted.clear()
            _jitted.update(jitted)
            _built_for = interpret
        return dict(_jitted)


# --------------------------------------------------------------------------------------------
# Argument checks, one place for every entry point.
# --------------------------------------------------------------------------------------------


def _check_device(t: torch.Tensor, name: str) -> None:
    if t.device.type == "cuda" or (t.device.type == "cpu" and _interpreting()):
        return
    raise ValueError(
        f"triton_gpu: {name} must be a CUDA tensor (or a CPU tensor under TRITON_INTERPRET=1), "
        f"got device {t.device}"
    )


def _check_target(device: torch.device) -> None:
    if device.type == "cuda" or (device.type == "cpu" and _interpreting()):
        return
    raise ValueError(
        "triton_gpu: device must be a CUDA device (or the CPU under TRITON_INTERPRET=1), "
        f"got {device}"
    )


def _check_float(t: torch.Tensor, name: str) -> None:
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"triton_gpu: {name} must have a dtype in {SUPPORTED_DTYPES}, got {t.dtype}"
        )


def _check_stream(numel: int, offset: int, what: str = "offset") -> int:
    """``offset`` as an int with ``offset + numel <= 2**63 - 1`` (the stream's index range)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {offset!r}")
    if offset + numel > _STREAM_END:
        raise ValueError(
            f"{what} + numel must be <= 2**63 - 1 (the stream's last index), got {what}={offset} "
            f"with numel={numel}"
        )
    return offset


def _check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise TypeError(f"threshold must be an int, got {type(threshold).__name__}")
    if not 0 <= threshold <= _THRESHOLD_MAX:
        raise ValueError(f"threshold must lie in [0, 2**32], got {threshold}")
    return threshold


def _check_out(out: torch.Tensor, x: torch.Tensor) -> None:
    if out.dtype != x.dtype or out.shape != x.shape or out.device != x.device:
        raise ValueError(
            f"out must match x: got {out.dtype} {tuple(out.shape)} on {out.device} for "
            f"{x.dtype} {tuple(x.shape)} on {x.device}"
        )
    if not out.is_contiguous():
        raise ValueError("triton_gpu: out must be contiguous")


def _stream_launch(numel: int, offset: int, elements_per_counter: int = 4) -> dict[str, object]:
    """Grid and stream arguments for ``numel`` items starting at item ``offset`` of a stream with
    ``elements_per_counter`` items per Philox counter (4 words, or 2 normal variates)."""
    shift = offset % elements_per_counter
    counters = (shift + numel + elements_per_counter - 1) // elements_per_counter
    programs = (counters + _GROUPS - 1) // _GROUPS
    return {
        "grid": (programs,),
        "first_group": offset // elements_per_counter,
        "SHIFT": shift,
        "GROUPS": _GROUPS,
        "WIDE": programs * elements_per_counter * _GROUPS >= 2**31,
    }


def broadcast_pattern(
    shape: tuple[int, ...] | torch.Size, mask_shape: tuple[int, ...]
) -> tuple[int, int, int] | None:
    """``(a, b, c)`` such that ``x`` of ``shape`` (row-major) is ``[a][b][c]`` with the mask
    (``mask_shape``, same rank, each entry ``shape``'s or 1) varying over ``a`` and ``c`` and
    broadcast over ``b``; None where the mask is not of that form (broadcast along two separate
    groups of dimensions, e.g. ``(N, 1, C, 1)`` over ``(N, H, C, W)``). The decomposition of the
    C++ ``broadcast_kernel`` (``dropkit_cpu.cpp``).

    Dimensions of size 1 belong to either kind and are skipped; adjacent dimensions of one kind
    merge. ``b == 1`` means the mask has ``x``'s elements in ``x``'s order (``a = numel``).
    Examples: ``(N, C, 1, 1)`` over ``(N, C, H, W)`` is ``(N C, H W, 1)`` (channel dropout),
    ``(N, 1, 1, C)`` over ``(N, H, W, C)`` is ``(N, H W, C)`` (channels last), ``(N, 1, 1, 1)``
    is ``(N, rest, 1)`` (drop-path), ``(1, N, C)`` over ``(T, N, C)`` is ``(1, T, N C)`` (locked).
    """
    groups: list[list] = []  # [masked, size] per merged group
    for size, m in zip(shape, mask_shape):
        if size == 1:
            continue
        masked = m == size
        if groups and groups[-1][0] == masked:
            groups[-1][1] *= size
        else:
            groups.append([masked, size])
    kinds = tuple(masked for masked, _ in groups)
    sizes = [size for _, size in groups]
    if False not in kinds:
        return math.prod(sizes), 1, 1
    if kinds == (False,):
        return 1, sizes[0], 1
    if kinds == (True, False):
        return sizes[0], sizes[1], 1
    if kinds == (False, True):
        return 1, sizes[0], sizes[1]
    if kinds == (True, False, True):
        return sizes[0], sizes[1], sizes[2]
    return None


_cached_pattern = functools.lru_cache(maxsize=1024)(broadcast_pattern)


def _pattern(x: torch.Tensor, mask_shape: tuple[int, ...] | None) -> tuple[int, int, int] | None:
    if mask_shape is None:
        return x.numel(), 1, 1
    return _cached_pattern(tuple(x.shape), tuple(mask_shape))


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def broadcast_blocks(a: int, b: int, c: int) -> tuple[int, int, int]:
    """The tile ``(BLOCK_I, BLOCK_J, BLOCK_K)`` of ``_broadcast_kernel`` for ``[a][b][c]``:
    powers of two covering up to ``_BROADCAST_TILE`` elements, the masked trailing group first
    (contiguous in memory), then the broadcast group (each mask word serves ``BLOCK_J`` elements),
    then the leading masked group (short broadcast rows, e.g. channel dropout on 7 x 7 maps, share
    a program)."""
    block_k = min(_pow2(c), _BROADCAST_K)
    block_j = min(_pow2(b), max(1, _BROADCAST_TILE // block_k))
    block_i = min(_pow2(a), max(1, _BROADCAST_TILE // (block_k * block_j)))
    return block_i, block_j, block_k


def _launch_broadcast(
    x: torch.Tensor,
    out: torch.Tensor,
    pattern: tuple[int, int, int],
    seed: int,
    offset: int,
    threshold: int,
    values: tuple[float, float, float],
    affine: bool,
) -> None:
    """One launch of ``_broadcast_kernel``: ``values`` are the multiplier (the scale, or alpha's
    ``a``), the kept shift and the dropped value (the shifts unused unless ``affine``)."""
    a, b, c = pattern
    block_i, block_j, block_k = broadcast_blocks(a, b, c)
    programs = -(-a // block_i) * -(-b // block_j) * -(-c // block_k)
    padded = (a + block_i) * (b + block_j) * (c + block_k)  # masked lanes' indices too
    k0, k1 = rng.split_seed(seed)
    mul, kept, dropped = values
    _launch(
        "_broadcast_kernel",
        (programs,),
        x.detach(),
        out.detach(),
        a,
        b,
        c,
        offset,
        k0,
        k1,
        threshold=threshold,
        mul_bits=_float64_bits(mul),
        kept_bits=_float64_bits(kept),
        dropped_bits=_float64_bits(dropped),
        BLOCK_I=block_i,
        BLOCK_J=block_j,
        BLOCK_K=block_k,
        AFFINE=affine,
        UNIT_C=c == 1,
        WIDE=padded >= 2**31 or programs >= 2**31,
        dtype=x.dtype,
    )


def _float64_bits(value: float) -> int:
    """The bits of ``float(value)`` as a signed int64 (how a scale reaches the kernels)."""
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


# Compiled kernels by launch_key(): a launch whose key was seen calls the compiled kernel's
# launcher directly. Triton's own launch path (binding the arguments, specialising each one,
# hashing the options) measured 29 us per call on an H200 host, more than torch's whole dropout
# (19 us); the launcher alone is a few microseconds. None once the direct call failed: every
# launch then takes Triton's path.
_compiled: dict[tuple, object] | None = {}


def _int_class(value: int) -> int:
    """The integer type Triton gives a scalar argument: 0 for i32, 1 for i64, 2 for u64."""
    if -(2**31) <= value < 2**31:
        return 0
    return 1 if -(2**63) <= value < 2**63 else 2


@functools.cache
def _direct_launch_api() -> bool:
    """Whether this Triton's compiled kernels take every argument, constexprs included, in
    parameter order (Triton >= 3.3, as its own ``JITFunction.run`` passes them); older ones take
    the others only, and keep Triton's path."""
    major, minor = (int(part) for part in triton.__version__.split(".")[:2])
    return (major, minor) >= (3, 3)


def _launch_hooks() -> bool:
    """Whether a launch hook is set (a profiler's): it needs Triton's launch metadata. Newer
    Triton holds hooks in a chain that is empty by default, older Triton ``None``."""
    runtime = triton.knobs.runtime
    return any(
        hook is not None and getattr(hook, "calls", True)
        for hook in (runtime.launch_enter_hook, runtime.launch_exit_hook)
    )


def launch_key(kernel, values: list, device: int) -> tuple:
    """What Triton's compiled variant depends on, for ``kernel``'s arguments ``values`` (in its
    parameter order): the constexprs' values, each tensor's dtype and 16-byte alignment, each
    integer's type and, where Triton specialises it, whether it is 1 or a multiple of 16."""
    key: list = [kernel.fn.__name__, device]
    for param, value in zip(kernel.params, values):
        if param.is_constexpr:
            key.append(value)
        elif isinstance(value, torch.Tensor):
            key.append((value.dtype, value.data_ptr() % 16 == 0))
        elif isinstance(value, bool) or not isinstance(value, int):
            key.append(type(value))
        elif param.do_not_specialize:
            key.append(_int_class(value))
        else:
            key.append((_int_class(value), value == 1, value % 16 == 0))
    return tuple(key)


def _launch(kernel_name: str, grid, *args, dtype: torch.dtype | None = None, **kwargs) -> None:
    """Launch a kernel; ``dtype`` (the input's) selects its accumulation dtype ``ACC``."""
    global _compiled
    kernel = _load()[kernel_name]
    if dtype is not None:  # float64 for float64 inputs, float32 for the others (the reference's)
        kwargs["ACC"] = tl.float64 if dtype == torch.float64 else tl.float32
    if _compiled is None or not _direct_launch_api() or _interpreting() or _launch_hooks():
        kernel[grid](*args, **kwargs, **LAUNCH_OPTIONS)
        return
    rest = kernel.params[len(args) :]
    if any(p.name not in kwargs for p in rest):  # a default argument: Triton binds it
        kernel[grid](*args, **kwargs, **LAUNCH_OPTIONS)
        return
    values = [*args, *(kwargs[p.name] for p in rest)]
    device = torch.cuda.current_device()
    key = launch_key(kernel, values, device)
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = kernel[grid](*args, **kwargs, **LAUNCH_OPTIONS)
        if all(hasattr(compiled, name) for name in ("run", "function", "packed_metadata")):
            _compiled[key] = compiled
        return
    stream = torch._C._cuda_getCurrentRawStream(device)  # what Triton's own launch asks torch
    try:
        compiled.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1,
                     stream, compiled.function, compiled.packed_metadata, None, None, None,
                     *values)  # fmt: skip
    except (TypeError, ValueError, AttributeError) as exc:
        # This Triton's launcher takes other arguments: Triton's own path from now on. The
        # launcher checks its arguments before it launches, so nothing ran.
        _compiled = None
        warnings.warn(
            f"dropkit: launching Triton kernels directly failed ({type(exc).__name__}: {exc}); "
            "every launch now takes Triton's slower path",
            RuntimeWarning,
            stacklevel=2,
        )
        kernel[grid](*args, **kwargs, **LAUNCH_OPTIONS)


# --------------------------------------------------------------------------------------------
# The contract.
# --------------------------------------------------------------------------------------------


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
    mask_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.kernels.reference.apply_keep_mask`:
    ``out = x * (scale if word(i + offset) >= threshold else 0)``, formed in the accumulation
    dtype and rounded once.

    ``x`` must be contiguous; ``out``, if given, must be contiguous with ``x``'s shape, dtype and
    device (it may be ``x`` itself: each element is read before it is written, by the same thread).
    A ``mask_shape`` other than ``x``'s: one pass of ``_broadcast_kernel`` where the mask is of
    :func:`broadcast_pattern`'s form (every dropkit layer's); otherwise the kernel draws the
    multipliers of the mask (over a tensor of ones: ``1 * scale`` is exact), then torch broadcasts
    the multiply (computed in the accumulation dtype and rounded once into ``out``).
    """
    _require_triton()
    _check_float(x, "x")
    _check_device(x, "x")
    if not x.is_contiguous():
        raise ValueError("triton_gpu.apply_keep_mask: x must be contiguous")
    mask_numel = x.numel() if mask_shape is None else math.prod(mask_shape)
    offset = _check_stream(mask_numel, offset)
    threshold = _check_threshold(threshold)
    if out is not None:
        _check_out(out, x)
    return keep_mask_checked(x, seed, offset, threshold, scale, out, mask_shape)


def keep_mask_checked(x, seed, offset, threshold, scale, out, mask_shape) -> torch.Tensor:
    """:func:`apply_keep_mask` on arguments already checked (by the operator's kernel, which
    checks them as the C++ kernels do): only the launch."""
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.numel() == 0:
        return out
    mask_numel = x.numel() if mask_shape is None else math.prod(mask_shape)
    pattern = _pattern(x, mask_shape)
    if pattern is None:  # broadcast along two separate groups: no one-pass kernel
        acc = reference.accumulation_dtype(x.dtype)
        multiplier = torch.ones(tuple(mask_shape), dtype=acc, device=x.device)
        apply_keep_mask(multiplier, seed, offset, threshold, scale, out=multiplier)
        torch.mul(x.detach(), multiplier, out=out.detach())
        return out
    if pattern[1] > 1:
        _launch_broadcast(x, out, pattern, seed, offset, threshold, (scale, 0.0, 0.0), False)
        return out
    k0, k1 = rng.split_seed(seed)
    launch = _stream_launch(mask_numel, offset)
    grid = launch.pop("grid")
    _launch(
        "_keep_mask_kernel",
        grid,
        x.detach(),
        out.detach(),
        mask_numel,
        k0,
        k1,
        threshold=threshold,
        scale_bits=_float64_bits(scale),
        dtype=x.dtype,
        **launch,
    )
    return out


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
    """Same contract as :func:`dropkit.kernels.reference.apply_keep_affine`, in one pass
    (``_keep_affine_kernel``, or ``_broadcast_kernel`` for a broadcast mask of
    :func:`broadcast_pattern`'s form). ``x``, ``out`` and ``mask_shape`` as in
    :func:`apply_keep_mask`; a mask of no such form takes the mask's stream words from Triton and
    finishes with the reference's own torch operations
    (:func:`dropkit.kernels.reference.affine_from_words`) on ``x``'s device."""
    _require_triton()
    _check_float(x, "x")
    _check_device(x, "x")
    if not x.is_contiguous():
        raise ValueError("triton_gpu.apply_keep_affine: x must be contiguous")
    shape = tuple(x.shape) if mask_shape is None else tuple(mask_shape)
    offset = _check_stream(math.prod(shape), offset)
    threshold = _check_threshold(threshold)
    if out is not None:
        _check_out(out, x)
    return keep_affine_checked(x, seed, offset, threshold, a, kept_shift, dropped_value, out,
                               mask_shape)  # fmt: skip


def keep_affine_checked(x, seed, offset, threshold, a, kept_shift, dropped_value, out,
                        mask_shape) -> torch.Tensor:  # fmt: skip
    """:func:`apply_keep_affine` on arguments already checked (see :func:`keep_mask_checked`)."""
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.numel() == 0:
        return out
    shape = tuple(x.shape) if mask_shape is None else tuple(mask_shape)
    mask_numel = math.prod(shape)
    pattern = _pattern(x, mask_shape)
    if pattern is None:  # broadcast along two separate groups: words here, torch finishes
        words = stream_words(mask_numel, seed, offset, x.device).reshape(shape)
        reference.affine_from_words(
            x.detach(), words, threshold, a, kept_shift, dropped_value, out.detach()
        )
        return out
    values = (a, kept_shift, dropped_value)
    if pattern[1] > 1:
        _launch_broadcast(x, out, pattern, seed, offset, threshold, values, True)
        return out
    k0, k1 = rng.split_seed(seed)
    launch = _stream_launch(mask_numel, offset)
    grid = launch.pop("grid")
    _launch(
        "_keep_affine_kernel",
        grid,
        x.detach(),
        out.detach(),
        mask_numel,
        k0,
        k1,
        threshold=threshold,
        mul_bits=_float64_bits(a),
        kept_bits=_float64_bits(kept_shift),
        dropped_bits=_float64_bits(dropped_value),
        dtype=x.dtype,
        **launch,
    )
    return out


def stream_words(
    numel: int, seed: int, offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """Same contract as :func:`dropkit.rng.stream_words`: the words of elements ``0 .. numel-1``
    at ``offset``, as int64 in ``[0, 2**32)``, on ``device`` (default: the current CUDA device)."""
    _require_triton()
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise ValueError(f"numel must be an integer >= 0, got {numel!r}")
    offset = _check_stream(numel, offset)
    target = torch.device("cuda") if device is None else torch.device(device)
    _check_target(target)
    out = torch.empty(numel, dtype=torch.int64, device=target)
    if numel == 0:
        return out
    k0, k1 = rng.split_seed(seed)
    launch = _stream_launch(numel, offset)
    grid = launch.pop("grid")
    _launch("_words_kernel", grid, out, numel, k0, k1, **launch)
    return out


def normal(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.rng.normal` (``offset`` counts variates), bit-identical to
    it on the same device: the uniforms come from Triton, the rest from the same torch operations.
    """
    _require_triton()
    shape = tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"shape must hold integers >= 0, got {shape}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    numel = math.prod(shape)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    # Variate k reads stream words 2k, 2k+1: the word range must fit the int64 stream index.
    if 2 * (offset + numel) > _STREAM_END:
        raise ValueError(
            f"2 * (offset + numel) must be <= 2**63 - 1 for normal variates (two stream words "
            f"each), "
            f"got offset={offset} with numel={numel}"
        )
    target = torch.device("cuda") if device is None else torch.device(device)
    _check_target(target)
    u1 = torch.empty(numel, dtype=torch.float64, device=target)
    u2 = torch.empty(numel, dtype=torch.float64, device=target)
    if numel:
        k0, k1 = rng.split_seed(seed)
        launch = _stream_launch(numel, offset, elements_per_counter=2)
        grid = launch.pop("grid")
        _launch("_uniforms_kernel", grid, u1, u2, numel, k0, k1, **launch)
    # The reference's own operations, in its order (dropkit.rng.normal).
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z.to(dtype).reshape(shape)


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
    """Same contract as :func:`dropkit.kernels.reference.bias_dropout_add`, in one pass:
    ``out = residual + (x + bias) * multiplier`` with the reference's three roundings and no FMA.

    ``x`` must be contiguous; ``bias`` broadcasts to ``x`` (usually ``(hidden,)``, read with period
    ``bias.numel()`` when it is ``x``'s trailing shape; any other broadcast is expanded first);
    ``residual`` broadcasts to ``x``; ``out`` (optional) is contiguous with ``x``'s shape, dtype and
    device and may be ``x`` or ``residual``.
    """
    _require_triton()
    _check_float(x, "x")
    _check_float(bias, "bias")
    _check_float(residual, "residual")
    for name, t in (("x", x), ("bias", bias), ("residual", residual)):
        _check_device(t, name)
        if t.device != x.device:
            raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    if not x.is_contiguous():
        raise ValueError("triton_gpu.bias_dropout_add: x must be contiguous")
    for name, t in (("bias", bias), ("residual", residual)):
        try:
            broadcast = torch.broadcast_shapes(t.shape, x.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != x.shape:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not broadcast to x's shape {tuple(x.shape)}"
            )
    n = x.numel()
    offset = _check_stream(n, offset)
    threshold = _check_threshold(threshold)
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    else:
        _check_out(out, x)
    if n == 0:
        return out
    trailing = bias.shape[next((d for d, s in enumerate(bias.shape) if s != 1), bias.dim()) :]
    if bias.numel() > 0 and tuple(trailing) == tuple(x.shape[x.dim() - len(trailing) :]):
        bias_flat = bias.detach().reshape(-1).contiguous()  # periodic: element i reads i % numel
    else:
        bias_flat = bias.detach().expand(x.shape).contiguous().reshape(-1)
    residual_flat = residual.detach().expand(x.shape).contiguous()
    k0, k1 = rng.split_seed(seed)
    launch = _stream_launch(n, offset)
    grid = launch.pop("grid")
    _launch(
        "_bias_dropout_add_kernel",
        grid,
        x.detach(),
        bias_flat,
        residual_flat,
        out.detach(),
        n,
        bias_flat.numel(),
        k0,
        k1,
        threshold=threshold,
        scale_bits=_float64_bits(scale),
        dtype=x.dtype,
        **launch,
    )
    return out
