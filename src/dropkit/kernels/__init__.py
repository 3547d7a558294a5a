"""dropkit's primitive operators: one operator of torch's dispatcher each, a kernel per key.

The primitives are declared here, once (:data:`SCHEMAS`), in the ``dropkit`` namespace:

- ``keep`` / ``keep_``: ``x * scale * [word >= threshold]``, the mask over ``mask_shape`` (``x``'s
  rank, each entry ``x``'s size or 1, the mask broadcast along the 1s): dropout, channel, locked and
  broadcast dropout, drop-path, stochastic depth;
- ``keep_affine`` / ``keep_affine_``: alpha dropout's ``x * M + B``;
- ``bias_dropout_add``: ``residual + (x + bias) * M`` in one pass;
- ``blocks``: DropBlock's ``x * M * scale`` (or ``x * M + z (1 - M)``), the blocks grown from the
  seeds of the stream (:func:`dropkit.kernels.reference.blocks`);
- ``_stream_words``, ``_normal_uniforms``: the raw stream, for the methods written in plain torch.

Their semantics are :mod:`dropkit.kernels.reference`'s, bit for bit. Kernels, one per dispatch
key, chosen once when dropkit is imported:

- ``CPU`` and ``Autograd``: the C++ library (``csrc/dropkit_ops.cpp`` and
  ``csrc/dropkit_blocks.cpp``, built on first use by :mod:`dropkit.kernels.cpu`); its autograd
  nodes keep the seed and the scalars, no tensor. Where it cannot be built (or
  ``DROPKIT_BACKEND=reference``), the reference and a Python autograd rule with the same values
  take both keys.
- ``CUDA``: :mod:`dropkit.kernels.triton_gpu` where Triton can run, else the reference.
- every other device: the reference (``CompositeExplicitAutograd``); ``Meta`` and fake tensors:
  ``torch.empty_like`` of the input (the layout the kernels return).

The seed is a one-element int64 CPU tensor, so a compiler can trace it as data. The functions
below (:func:`apply_keep_mask`, :func:`stream_words`, ...) take a Python int seed: they are how
the plain-torch methods of :mod:`dropkit.ops` read the stream, through the same operators.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from dropkit.kernels import cpu, reference

__all__ = [
    "MAX_STREAM_INDEX",
    "SCHEMAS",
    "apply_keep_affine",
    "apply_keep_mask",
    "backend",
    "bias_dropout_add",
    "normal",
    "seed_tensor",
    "stream_words",
    "triton_kernels",
]

# The stream index of the last element a call may read: offset + numel <= MAX_STREAM_INDEX (the
# largest int64, so every index is exact in every backend's int64 arithmetic).
MAX_STREAM_INDEX = 2**63 - 1

_KEEP_ARGS = "Tensor seed, int offset, int threshold, float scale, int[] mask_shape"
_AFFINE_ARGS = (
    "Tensor seed, int offset, int threshold, float a, float kept_shift, float dropped_value, "
    "int[] mask_shape"
)
SCHEMAS = {
    "keep": f"keep(Tensor x, {_KEEP_ARGS}) -> Tensor",
    "keep_": f"keep_(Tensor(a!) x, {_KEEP_ARGS}) -> Tensor(a!)",
    "keep_affine": f"keep_affine(Tensor x, {_AFFINE_ARGS}) -> Tensor",
    "keep_affine_": f"keep_affine_(Tensor(a!) x, {_AFFINE_ARGS}) -> Tensor(a!)",
    "bias_dropout_add": (
        "bias_dropout_add(Tensor x, Tensor bias, Tensor residual, Tensor seed, int offset, "
        "int threshold, float scale) -> Tensor"
    ),
    "blocks": (
        "blocks(Tensor x, Tensor seed, int offset, bool affine, int threshold, int[] sizes, "
        "bool per_channel, bool clip, str normalize, float eps, bool noise) -> Tensor"
    ),
    "_stream_words": "_stream_words(Tensor(a!) out, Tensor seed, int offset) -> Tensor(a!)",
    "_normal_uniforms": "_normal_uniforms(int n, Tensor seed, int offset) -> (Tensor, Tensor)",
}

_LIBRARY = torch.library.Library("dropkit", "FRAGMENT")
for _schema in SCHEMAS.values():
    _LIBRARY.define(_schema)


# -- the operators' own argument checks, in every Python kernel (the C++ kernels make the same) --
_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_seed(op: str, seed: torch.Tensor) -> None:
    if seed.numel() != 1 or seed.dtype != torch.int64 or seed.device.type != "cpu":
        raise RuntimeError(
            f"{op}: seed must be a one-element int64 CPU tensor, got {seed.dtype} of shape "
            f"{list(seed.shape)} on {seed.device}"
        )


def _check_stream(op: str, offset: int, threshold: int, words: int) -> None:
    if not 0 <= offset <= MAX_STREAM_INDEX - words:
        raise RuntimeError(
            f"{op}: offset must be >= 0 with offset + numel <= 2**63 - 1, got offset={offset} "
            f"for numel={words}"
        )
    if not 0 <= threshold <= 2**32:
        raise RuntimeError(f"{op}: threshold must be in [0, 2**32], got {threshold}")


def _check_floating(op: str, x: torch.Tensor) -> None:
    if x.dtype not in _FLOATING:
        raise RuntimeError(f"{op}: x must be float16, bfloat16, float32 or float64, got {x.dtype}")


def _check_keep(op, x, seed, offset, threshold, mask_shape) -> None:
    """What the C++ kernels check, for the Python kernels (reference, Triton)."""
    if len(mask_shape) != x.dim() or any(
        m != size and m != 1 for m, size in zip(mask_shape, x.shape)
    ):
        raise RuntimeError(
            f"{op}: mask_shape must have one entry per dimension of x, each x's size or 1, got "
            f"{list(mask_shape)} for x of shape {list(x.shape)}"
        )
    _check_stream(op, offset, threshold, math.prod(mask_shape))
    _check_seed(op, seed)
    _check_floating(op, x)


def _check_bias_dropout_add(x, bias, residual, seed, offset, threshold) -> None:
    op = "dropkit::bias_dropout_add"
    if residual.shape != x.shape:
        raise RuntimeError(
            f"{op}: residual must have x's shape {list(x.shape)}, got {list(residual.shape)}"
        )
    if bias.dtype != x.dtype or residual.dtype != x.dtype:
        raise RuntimeError(f"{op}: x, bias and residual must share one dtype")
    if bias.dim() > x.dim() or x.shape[x.dim() - bias.dim() :] != bias.shape:
        raise RuntimeError(
            f"{op}: bias must have x's trailing shape, got {list(bias.shape)} for x of shape "
            f"{list(x.shape)}"
        )
    _check_stream(op, offset, threshold, x.numel())
    _check_seed(op, seed)
    _check_floating(op, x)


# -- the reference kernels (every device; CPU too where the C++ library is not loaded) -----------
def _keep_reference(x, seed, offset, threshold, scale, mask_shape):
    _check_keep("dropkit::keep", x, seed, offset, threshold, mask_shape)
    out = torch.empty_like(x)
    return reference.apply_keep_mask(x, int(seed), offset, threshold, scale, out, mask_shape)


def _keep_inplace_reference(x, seed, offset, threshold, scale, mask_shape):
    _check_keep("dropkit::keep_", x, seed, offset, threshold, mask_shape)
    return reference.apply_keep_mask(x, int(seed), offset, threshold, scale, x, mask_shape)


def _affine_reference(x, seed, offset, threshold, a, kept_shift, dropped_value, mask_shape):
    _check_keep("dropkit::keep_affine", x, seed, offset, threshold, mask_shape)
    out = torch.empty_like(x)
    return reference.apply_keep_affine(
        x, int(seed), offset, threshold, a, kept_shift, dropped_value, out, mask_shape
    )


def _affine_inplace_reference(x, seed, offset, threshold, a, kept_shift, dropped_value,
                              mask_shape):  # fmt: skip
    _check_keep("dropkit::keep_affine_", x, seed, offset, threshold, mask_shape)
    return reference.apply_keep_affine(
        x, int(seed), offset, threshold, a, kept_shift, dropped_value, x, mask_shape
    )


def _bias_dropout_add_reference(x, bias, residual, seed, offset, threshold, scale):
    _check_bias_dropout_add(x, bias, residual, seed, offset, threshold)
    out = torch.empty_like(x)
    return reference.bias_dropout_add(x, bias, residual, int(seed), offset, threshold, scale, out)


def _check_blocks(x, seed, offset, threshold, sizes, per_channel, normalize) -> None:
    op = "dropkit::blocks"
    if not 3 <= x.dim() <= 5:
        raise RuntimeError(
            f"{op}: x must be (N, C, *S) with 1 to 3 spatial dimensions, got {x.dim()}D"
        )
    spatial = x.shape[2:]
    if len(sizes) != len(spatial) or any(not 1 <= k <= s for k, s in zip(sizes, spatial)):
        raise RuntimeError(
            f"{op}: sizes must hold one block side in [1, S_d] per spatial size S_d, got "
            f"{list(sizes)} for x of shape {list(x.shape)}"
        )
    if normalize not in ("sample", "batch", "none"):
        raise RuntimeError(
            f"{op}: normalize must be 'sample', 'batch' or 'none', got '{normalize}'"
        )
    _check_stream(op, offset, threshold, x.shape[0] * (x.shape[1] if per_channel else 1)
                  * math.prod(spatial))  # fmt: skip
    _check_seed(op, seed)
    _check_floating(op, x)


def _blocks_reference(x, seed, offset, affine, threshold, sizes, per_channel, clip, normalize,
                      eps, noise):  # fmt: skip
    _check_blocks(x, seed, offset, threshold, sizes, per_channel, normalize)
    if x.numel() == 0:
        return torch.empty_like(x)
    return reference.blocks(x, int(seed), offset, affine, threshold, list(sizes), per_channel,
                            clip, normalize, eps, noise)  # fmt: skip


def _stream_words_reference(out, seed, offset):
    _check_words(out, seed, offset)
    return out.copy_(reference.stream_words(out.numel(), int(seed), offset, out.device))


def _check_words(out, seed, offset) -> None:
    if out.dtype != torch.int64 or not out.is_contiguous():
        raise RuntimeError("dropkit::_stream_words: out must be a contiguous int64 tensor")
    _check_stream("dropkit::_stream_words", offset, 0, out.numel())
    _check_seed("dropkit::_stream_words", seed)


def _box_muller_uniforms(words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Box-Muller's uniforms from word pairs ``(n, 2)``: ``u1 = ((w0 >> 8) + 1) 2^-24`` in (0, 1],
    ``u2 = (w1 >> 8) 2^-24`` in [0, 1), exact in float64 (the C++ kernel's values)."""
    u1 = ((words[:, 0] >> 8) + 1).to(torch.float64) * 2.0**-24
    u2 = (words[:, 1] >> 8).to(torch.float64) * 2.0**-24
    return u1, u2


def _normal_uniforms_reference(n, seed, offset):
    if n < 0 or offset < 0 or offset > MAX_STREAM_INDEX // 2 - n:
        raise RuntimeError(
            "dropkit::_normal_uniforms: offset must be >= 0 with 2 * (offset + n) <= 2**63 - 1, "
            f"got offset={offset} for n={n}"
        )
    _check_seed("dropkit::_normal_uniforms", seed)
    return _box_muller_uniforms(reference.stream_words(2 * n, int(seed), 2 * offset).reshape(-1, 2))


_REFERENCE = {
    "keep": _keep_reference,
    "keep_": _keep_inplace_reference,
    "keep_affine": _affine_reference,
    "keep_affine_": _affine_inplace_reference,
    "bias_dropout_add": _bias_dropout_add_reference,
    "blocks": _blocks_reference,
    "_stream_words": _stream_words_reference,
    "_normal_uniforms": _normal_uniforms_reference,
}


# -- fakes (meta tensors, torch.compile, torch.export) -------------------------------------------
def _like_first(x, seed, *args):
    _check_seed("dropkit operator", seed)  # a meta seed would dispatch here with real inputs
    return torch.empty_like(x)


def _first(x, seed, *args):
    _check_seed("dropkit operator", seed)
    return x


def _like_first_bias_dropout_add(x, bias, residual, seed, *args):
    _check_seed("dropkit::bias_dropout_add", seed)
    return torch.empty_like(x)


def _normal_uniforms_fake(n, seed, offset):
    return (torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64))


for _name, _fake in {
    "keep": _like_first,
    "keep_": _first,
    "keep_affine": _like_first,
    "keep_affine_": _first,
    "bias_dropout_add": _like_first_bias_dropout_add,
    "blocks": _like_first,
    "_stream_words": _first,
    "_normal_uniforms": _normal_uniforms_fake,
}.items():
    torch.library.register_fake(f"dropkit::{_name}", _fake, lib=_LIBRARY)


# -- the Python autograd rules (used where the C++ library, which has its own, is not loaded) ----
def _setup_keep(ctx, inputs, output):
    ctx.seed, ctx.offset, ctx.threshold, ctx.scale, ctx.mask_shape = inputs[1:]


def _keep_backward(ctx, grad):
    grad_x = torch.ops.dropkit.keep(grad, ctx.seed, ctx.offset, ctx.threshold, ctx.scale,
                                    ctx.mask_shape)  # fmt: skip
    return grad_x, None, None, None, None, None


def _setup_affine(ctx, inputs, output):
    ctx.seed, ctx.offset, ctx.threshold, ctx.scale = inputs[1:5]
    ctx.mask_shape = inputs[7]


def _affine_backward(ctx, grad):
    return _keep_backward(ctx, grad)[:1] + (None,) * 7


def _setup_bias_dropout_add(ctx, inputs, output):
    x, bias, _, ctx.seed, ctx.offset, ctx.threshold, ctx.scale = inputs
    ctx.mask_shape = list(x.shape)
    ctx.bias_shape = bias.shape


def _bias_dropout_add_backward(ctx, grad):
    grad_x = _keep_backward(ctx, grad)[0]
    grad_bias = grad_x.sum_to_size(ctx.bias_shape) if ctx.needs_input_grad[1] else None
    return grad_x, grad_bias, grad, None, None, None, None


def _setup_blocks(ctx, inputs, output):
    ctx.args = inputs[1:]


def _blocks_backward(ctx, grad):
    seed, offset, _, *params = ctx.args
    return (torch.ops.dropkit.blocks(grad, seed, offset, False, *params),) + (None,) * 10


def _register_python_autograd() -> None:
    for name, backward, setup in (
        ("keep", _keep_backward, _setup_keep),
        ("blocks", _blocks_backward, _setup_blocks),
        ("keep_affine", _affine_backward, _setup_affine),
        ("bias_dropout_add", _bias_dropout_add_backward, _setup_bias_dropout_add),
    ):
        torch.library.register_autograd(
            f"dropkit::{name}", backward, setup_context=setup, lib=_LIBRARY
        )


# -- CUDA ----------------------------------------------------------------------------------------
def triton_kernels() -> dict:
    """The Triton kernels of the operators, by name (contiguous tensors; any other layout goes to
    the reference), or an empty dict where Triton is missing or cannot run. They take the CUDA
    key; tests run them on CPU tensors under ``TRITON_INTERPRET=1``."""
    try:
        from dropkit.kernels import triton_gpu
    except ImportError:  # Triton missing: CUDA tensors keep the reference
        return {}
    if not triton_gpu.available():
        return {}

    def keep(x, seed, offset, threshold, scale, mask_shape):
        if not x.is_contiguous():
            return _keep_reference(x, seed, offset, threshold, scale, mask_shape)
        _check_keep("dropkit::keep", x, seed, offset, threshold, mask_shape)
        return triton_gpu.keep_mask_checked(x, int(seed), offset, threshold, scale, None,
                                            mask_shape)  # fmt: skip

    def keep_(x, seed, offset, threshold, scale, mask_shape):
        if not x.is_contiguous():
            return _keep_inplace_reference(x, seed, offset, threshold, scale, mask_shape)
        _check_keep("dropkit::keep_", x, seed, offset, threshold, mask_shape)
        return triton_gpu.keep_mask_checked(x, int(seed), offset, threshold, scale, x,
                                            mask_shape)  # fmt: skip

    def keep_affine(x, seed, offset, threshold, a, kept_shift, dropped_value, mask_shape):
        if not x.is_contiguous():
            return _affine_reference(x, seed, offset, threshold, a, kept_shift, dropped_value,
                                     mask_shape)  # fmt: skip
        _check_keep("dropkit::keep_affine", x, seed, offset, threshold, mask_shape)
        return triton_gpu.keep_affine_checked(x, int(seed), offset, threshold, a, kept_shift,
                                              dropped_value, None, mask_shape)  # fmt: skip

    def keep_affine_(x, seed, offset, threshold, a, kept_shift, dropped_value, mask_shape):
        if not x.is_contiguous():
            return _affine_inplace_reference(x, seed, offset, threshold, a, kept_shift,
                                             dropped_value, mask_shape)  # fmt: skip
        _check_keep("dropkit::keep_affine_", x, seed, offset, threshold, mask_shape)
        return triton_gpu.keep_affine_checked(x, int(seed), offset, threshold, a, kept_shift,
                                              dropped_value, x, mask_shape)  # fmt: skip

    def bias_dropout_add(x, bias, residual, seed, offset, threshold, scale):
        if not (x.is_contiguous() and bias.is_contiguous() and residual.is_contiguous()):
            return _bias_dropout_add_reference(x, bias, residual, seed, offset, threshold, scale)
        _check_bias_dropout_add(x, bias, residual, seed, offset, threshold)
        return triton_gpu.bias_dropout_add(x, bias, residual, int(seed), offset, threshold, scale)

    def stream_words_(out, seed, offset):
        _check_words(out, seed, offset)
        return out.copy_(triton_gpu.stream_words(out.numel(), int(seed), offset, out.device))

    return {
        "keep": keep,
        "keep_": keep_,
        "keep_affine": keep_affine,
        "keep_affine_": keep_affine_,
        "bias_dropout_add": bias_dropout_add,
        "_stream_words": stream_words_,
    }


# -- choose the kernels, once ----------------------------------------------------------------------
def _choose() -> str:
    for name, kernel in _REFERENCE.items():
        _LIBRARY.impl(name, kernel, "CompositeExplicitAutograd")
    requested = os.environ.get("DROPKIT_BACKEND", "auto")
    if requested not in ("auto", "reference"):
        raise ValueError(
            f"DROPKIT_BACKEND must be 'auto' or 'reference', got {requested!r} (unset it for the "
            "compiled CPU kernels)"
        )
    native = requested == "auto" and cpu.load()
    if not native:
        _register_python_autograd()
    if torch.cuda.is_available():
        for name, kernel in triton_kernels().items():
            _LIBRARY.impl(name, kernel, "CUDA")
    return "cpu" if native else "reference"


_backend = _choose()


def backend() -> str:
    """The CPU kernels this process uses: ``"cpu"`` (the compiled C++ library) or
    ``"reference"`` (plain torch: no compiler, a failed build, or ``DROPKIT_BACKEND=reference``).
    Both give the same bits; the choice is made once, when dropkit is imported."""
    return _backend


# -- the stream for plain-torch methods (seed as a Python int) -----------------------------------
def seed_tensor(seed: int | torch.Tensor) -> torch.Tensor:
    """``seed`` as the operators take it: a 0-d int64 CPU tensor (seeds in ``[2**63, 2**64)``
    wrap to the int64 of the same 64 bits); a one-element tensor is reshaped and moved, its
    value never read (a traced seed stays in the graph)."""
    if isinstance(seed, torch.Tensor):
        return seed.reshape(()).to(device="cpu", dtype=torch.int64)
    return torch.tensor(seed - 2**64 if seed >= 2**63 else seed, dtype=torch.int64)


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
    mask_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """``x * (scale if stream word >= threshold else 0)`` through ``dropkit::keep`` (see
    :func:`dropkit.kernels.reference.apply_keep_mask`); ``out`` may be ``x`` (then ``keep_``)."""
    shape = list(x.shape) if mask_shape is None else list(mask_shape)
    if out is x:
        return torch.ops.dropkit.keep_(x, seed_tensor(seed), offset, threshold, scale, shape)
    result = torch.ops.dropkit.keep(x, seed_tensor(seed), offset, threshold, scale, shape)
    return result if out is None else out.copy_(result)


def apply_keep_affine(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    a: float,
    kept_shift: float,
    dropped_value: float,
    out: torch.Tensor | None = None,
    mask_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """Alpha dropout's ``x * M + B`` through ``dropkit::keep_affine`` (see
    :func:`dropkit.kernels.reference.apply_keep_affine`)."""
    shape = list(x.shape) if mask_shape is None else list(mask_shape)
    args = (seed_tensor(seed), offset, threshold, a, kept_shift, dropped_value, shape)
    if out is x:
        return torch.ops.dropkit.keep_affine_(x, *args)
    result = torch.ops.dropkit.keep_affine(x, *args)
    return result if out is None else out.copy_(result)


def bias_dropout_add(
    x: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
) -> torch.Tensor:
    """``residual + keep_mask(x + bias)`` through ``dropkit::bias_dropout_add``."""
    return torch.ops.dropkit.bias_dropout_add(
        x, bias, residual, seed_tensor(seed), offset, threshold, scale
    )


def stream_words(
    numel: int, seed: int, offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """The stream words of elements ``0 .. numel-1`` at ``offset``, int64 in ``[0, 2**32)``
    (:func:`dropkit.rng.stream_words`)."""
    if numel < 0 or offset < 0 or offset + numel > MAX_STREAM_INDEX:
        raise ValueError(
            f"stream_words: need numel >= 0, offset >= 0 and offset + numel <= 2**63 - 1, got "
            f"numel={numel}, offset={offset}"
        )
    out = torch.empty(numel, dtype=torch.int64, device=device)
    return torch.ops.dropkit._stream_words(out, seed_tensor(seed), offset)


def normal(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normals of the stream (:func:`dropkit.rng.normal`; ``offset`` counts variates,
    each of which reads two stream words): the uniforms from the stream, then Box-Muller in
    torch's own float64 operations (the same roundings on every backend)."""
    numel = math.prod(int(s) for s in shape)
    if offset < 0 or 2 * (offset + numel) > MAX_STREAM_INDEX:
        raise ValueError(
            "offset must be >= 0 with 2 * (offset + numel) <= 2**63 - 1 (each variate reads two "
            f"stream words), got offset={offset} for numel={numel}"
        )
    target = torch.device("cpu") if device is None else torch.device(device)
    if target.type == "cpu":
        u1, u2 = torch.ops.dropkit._normal_uniforms(numel, seed_tensor(seed), offset)
    else:
        u1, u2 = _box_muller_uniforms(
            stream_words(2 * numel, seed, 2 * offset, target).reshape(-1, 2)
        )
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z.to(dtype).reshape(tuple(shape))
