"""Output buffers for the CPU kernels: large ones are advised to use transparent huge pages.

Every out-of-place op gets fresh memory, and for large tensors the allocator maps new pages from
the kernel, which faults them in 4 KiB at a time on first write. Measured on this project's machine
(Linux, transparent huge pages in ``madvise`` mode), filling a fresh 64 MiB tensor took 16.0 ms,
5.7 ms after ``madvise(MADV_HUGEPAGE)``, and 1.5 ms when the memory was already mapped: the page
faults, not the writes, dominate. PyTorch offers the same for its own allocations behind the
``THP_MEM_ALLOC_ENABLE=1`` environment variable. The advice changes no value; where it is not
available (another OS, a libc without ``madvise``) buffers are plain ``torch.empty_like``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

__all__ = ["empty_output"]

_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14
# glibc serves blocks below its largest mmap threshold (32 MiB on 64-bit) from the heap once a
# block of that size has been freed, so they are already mapped; measured, advising such a buffer
# made a broadcast multiply 2-7% slower (4-16 MiB), while at 32-64 MiB it halved the time.
_ADVISE_MIN_BYTES = 32 << 20


def _load_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _load_madvise()


def empty_output(like: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor of ``like``'s shape and dtype."""
    out = torch.empty_like(like, memory_format=torch.contiguous_format)
    nbytes = out.numel() * out.element_size()
    if _madvise is not None and nbytes >= _ADVISE_MIN_BYTES:
        address = out.data_ptr()
        # Only whole huge pages inside the buffer: never advise memory that is not ours.
        start = (address + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        stop = (address + nbytes) & ~(_HUGE_PAGE - 1)
        if stop > start:
            _madvise(start, stop - start, _MADV_HUGEPAGE)  # advisory: a failure changes nothing
    return out
