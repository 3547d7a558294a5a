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

__all__ = ["BACKENDS", "apply_keep_mask", "get_backend", "set_backend"]

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
