"""Dropout kernels: one contract, several backends that return the same bits.

The contract is five functions — :func:`apply_keep_mask`, :func:`apply_keep_affine`,
:func:`stream_words`, :func:`normal` and :func:`bias_dropout_add` — defined by the plain-torch
:mod:`dropkit.kernels.reference`. This module checks their arguments once and routes each call to
a backend:

- ``"auto"`` (the default): :mod:`dropkit.kernels.cpu` (C++ kernels in torch's intra-op thread
  pool) for CPU tensors, :mod:`dropkit.kernels.triton_gpu` for CUDA tensors where it is installed
  and ``triton_gpu.available()`` says it can run, the reference elsewhere;
- ``"cpu"``: the C++ kernels for CPU tensors, the reference for every other device;
- ``"reference"``: the reference everywhere.

Choose with :func:`set_backend` or the ``DROPKIT_BACKEND`` environment variable. Every backend
draws the same masks; where the C++ kernels cannot be built, the CPU backend warns once and uses
the reference. Importing dropkit compiles nothing: backends are imported on first use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import ModuleType

import torch

from dropkit.kernels import reference

__all__ = [
    "BACKENDS",
    "MAX_STREAM_INDEX",
    "apply_keep_affine",
    "apply_keep_mask",
    "apply_keep_mask_autograd",
    "bias_dropout_add",
    "get_backend",
    "normal",
    "set_backend",
    "stream_words",
]

BACKENDS = ("auto", "cpu", "reference")
# The stream index of the last element a call may read: offset + numel <= MAX_STREAM_INDEX (the
# largest int64, so every index is exact in every backend's int64 arithmetic).
MAX_STREAM_INDEX = 2**63 - 1
_MAX_THRESHOLD = 2**32


def _validated(name: object, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return name  # type: ignore[return-value]


_backend = _validated(os.environ.get("DROPKIT_BACKEND", "auto"), "DROPKIT_BACKEND")
_triton: ModuleType | None | bool = None  # None: not looked for yet; False: not usable
_cpu: ModuleType | None = None  # dropkit.kernels.cpu once imported (on first use)


def set_backend(name: str) -> None:
    """Select the kernel backend: ``"auto"``, ``"cpu"`` or ``"reference"``."""
    global _backend
    _backend = _validated(name, "backend")


def get_backend() -> str:
    """The backend selected by :func:`set_backend` (or ``DROPKIT_BACKEND``)."""
    return _backend


def _triton_backend() -> ModuleType | None:
    global _triton
    if _triton is None:
        try:
            # import_module reads sys.modules, so a replaced or blocked module is honoured.
            triton_gpu = importlib.import_module("dropkit.kernels.triton_gpu")
        except ImportError:  # not installed (or Triton missing): CUDA tensors use the reference
            _triton = False
        else:
            _triton = triton_gpu if triton_gpu.available() else False
    return _triton or None


def _cpu_backend() -> ModuleType:
    global _cpu
    if _cpu is None:
        from dropkit.kernels import cpu  # deferred: importing dropkit compiles nothing

        _cpu = cpu
    return _cpu


def _backend_for(device: torch.device) -> ModuleType:
    if _backend != "reference":
        if device.type == "cpu":
            return _cpu if _cpu is not None else _cpu_backend()
        if device.type == "cuda" and _backend == "auto":
            triton = _triton_backend()
            if triton is not None:
                return triton
    return reference


def _check_stream(numel: int, offset: int, what: str = "offset") -> None:
    if offset < 0 or offset + numel > MAX_STREAM_INDEX:
        raise ValueError(
            f"{what} must be >= 0 with {what} + numel <= 2**63 - 1, got {what}={offset} for "
            f"numel={numel}"
        )


def _check_keep(threshold: int) -> None:
    if not 0 <= threshold <= _MAX_THRESHOLD:
        raise ValueError(f"threshold must be in [0, 2**32], got {threshold}")


def _checked_mask(
    x: torch.Tensor, mask_shape: Sequence[int] | None
) -> tuple[tuple[int, ...] | None, int]:
    """``(mask_shape as a tuple, or None, and the mask's element count)``: one entry per
    dimension of ``x``, each ``x``'s size or 1 (the mask is broadcast along the 1s); None means
    the mask has ``x``'s shape. A plain loop: this runs on every broadcast-mask call."""
    if mask_shape is None:
        return None, x.numel()
    sizes = x.shape
    try:
        shape = tuple(mask_shape)
    except TypeError:
        shape = None
    valid = shape is not None and len(shape) == len(sizes)
    if valid:
        numel = 1
        for m, size in zip(shape, sizes):
            if type(m) is not int or (m != size and m != 1):
                valid = False
                break
            numel *= m
    if not valid:
        raise ValueError(
            f"mask_shape must have one entry per dimension of x ({x.dim()}), each x's size or 1, "
            f"got mask_shape={mask_shape!r} for x of shape {tuple(sizes)}"
        )
    return shape, numel


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
    mask_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """``x * (scale if stream word >= threshold else 0)``; see :mod:`dropkit.kernels.reference`.

    ``x`` must be contiguous; ``out`` (optional, may be ``x``) must be contiguous too. With
    ``mask_shape`` (``x``'s rank, each entry ``x``'s size or 1) the stream indexes the mask's
    row-major elements and the mask is broadcast over ``x``: channel dropout, drop-path, locked
    dropout.
    """
    shape, numel = _checked_mask(x, mask_shape)
    _check_stream(numel, offset)
    _check_keep(threshold)
    return _backend_for(x.device).apply_keep_mask(x, seed, offset, threshold, scale, out, shape)


def apply_keep_mask_autograd(
    x: torch.Tensor, seed: int, offset: int, threshold: int, scale: float
) -> torch.Tensor:
    """:func:`apply_keep_mask` (a mask of ``x``'s shape) as one op whose gradient rule is the
    backend's own (the C++ backend: an autograd node in C++), or ``NotImplemented`` where the
    backend has none for ``x`` (the caller then uses its own autograd rule: the same values)."""
    _check_stream(x.numel(), offset)
    _check_keep(threshold)
    native = getattr(_backend_for(x.device), "apply_keep_mask_autograd", None)
    if native is None:
        return NotImplemented
    return native(x, seed, offset, threshold, scale)


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
    """Alpha dropout's ``x * M + B``: ``(a, kept_shift)`` where the stream word is
    ``>= threshold``, ``(0, dropped_value)`` elsewhere; see
    :func:`dropkit.kernels.reference.apply_keep_affine` for the exact rounding. ``x``, ``out``
    and ``mask_shape`` as in :func:`apply_keep_mask`."""
    shape, numel = _checked_mask(x, mask_shape)
    _check_stream(numel, offset)
    _check_keep(threshold)
    return _backend_for(x.device).apply_keep_affine(
        x, seed, offset, threshold, a, kept_shift, dropped_value, out, shape
    )


def stream_words(
    numel: int, seed: int, offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """The stream words of elements ``0 .. numel-1`` at ``offset``, int64 in ``[0, 2**32)``
    (:func:`dropkit.rng.stream_words`)."""
    if numel < 0:
        raise ValueError(f"numel must be >= 0, got {numel}")
    _check_stream(numel, offset)
    target = torch.device("cpu") if device is None else torch.device(device)
    return _backend_for(target).stream_words(numel, seed, offset, target)


def normal(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normals of the stream (:func:`dropkit.rng.normal`; ``offset`` counts variates,
    each of which reads two stream words)."""
    numel = 1
    for size in shape:
        numel *= int(size)
    if offset < 0 or 2 * (offset + numel) > MAX_STREAM_INDEX:
        raise ValueError(
            "offset must be >= 0 with 2 * (offset + numel) <= 2**63 - 1 (each variate reads two "
            f"stream words), got offset={offset} for numel={numel}"
        )
    target = torch.device("cpu") if device is None else torch.device(device)
    return _backend_for(target).normal(shape, seed, offset, target, dtype)


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
    """``residual + keep_mask(x + bias)`` in one pass; see
    :func:`dropkit.kernels.reference.bias_dropout_add` for the exact rounding."""
    _check_stream(x.numel(), offset)
    _check_keep(threshold)
    return _backend_for(x.device).bias_dropout_add(
        x, bias, residual, seed, offset, threshold, scale, out
    )
