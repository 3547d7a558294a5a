"""Dropout kernels: the plain-torch reference (the semantics) and the fast CPU backend.

``apply_keep_mask`` dispatches to a backend; every backend produces bit-identical output for the
same arguments. Choose one with :func:`set_backend` or the ``DROPKIT_BACKEND`` environment variable
(``auto`` — numba for CPU tensors, reference elsewhere —, ``numba`` or ``reference``). Tensors on
devices other than the CPU always use the reference backend, which draws the same masks.
"""

from __future__ import annotations

import os

import torch

from dropkit.kernels import reference

__all__ = [
    "BACKENDS",
    "apply_keep_mask",
    "bias_dropout_add",
    "get_backend",
    "normal",
    "set_backend",
    "stream_words",
]

BACKENDS = ("auto", "numba", "reference")


def _validated(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


_backend = _validated(os.environ.get("DROPKIT_BACKEND", "auto"))


def set_backend(name: str) -> None:
    """Select the kernel backend: ``"auto"``, ``"numba"`` or ``"reference"``."""
    global _backend
    _backend = _validated(name)


def get_backend() -> str:
    """The backend selected by :func:`set_backend` (or ``DROPKIT_BACKEND``)."""
    return _backend


def _use_numba(x: torch.Tensor) -> bool:
    return _backend != "reference" and x.device.type == "cpu"


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x * (scale if stream word >= threshold else 0)``; see :mod:`dropkit.kernels.reference`.

    ``x`` must be contiguous; ``out`` (optional, may be ``x``) must be contiguous too.
    """
    if _use_numba(x):
        from dropkit.kernels import numba_cpu  # deferred: importing dropkit compiles nothing

        return numba_cpu.apply_keep_mask(x, seed, offset, threshold, scale, out)
    return reference.apply_keep_mask(x, seed, offset, threshold, scale, out)


def stream_words(
    numel: int, seed: int, offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """The stream words of elements ``0 .. numel-1`` at ``offset``, int64 in ``[0, 2**32)``
    (:func:`dropkit.rng.stream_words`)."""
    return reference.stream_words(numel, seed, offset, device)


def normal(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normals of the stream (:func:`dropkit.rng.normal`; ``offset`` counts variates)."""
    target = torch.device("cpu") if device is None else torch.device(device)
    if _backend != "reference" and target.type == "cpu":
        from dropkit.kernels import numba_normal  # deferred: compiles on first use

        return numba_normal.normal(shape, seed, offset, target, dtype)
    return reference.normal(shape, seed, offset, device, dtype)


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
    return reference.bias_dropout_add(x, bias, residual, seed, offset, threshold, scale, out)
