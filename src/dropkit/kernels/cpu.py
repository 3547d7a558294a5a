"""The compiled CPU kernels: ``csrc/dropkit_ops.cpp`` and ``csrc/dropkit_blocks.cpp``, built with
torch's extension machinery on first use and loaded into the process, where its static
registrations give the ``dropkit`` operators their ``CPU`` and ``Autograd`` kernels
(:mod:`dropkit.kernels`).

The kernels generate the Philox4x32-10 stream of :mod:`dropkit.rng` with SIMD integer multiplies and
apply it in the same pass, split over torch's own intra-op thread pool (``at::parallel_for``), so
``torch.set_num_threads`` governs them and no second thread team spins beside torch's. In a forked
child they run on the calling thread (GNU OpenMP cannot start a team there); the library is loaded
when dropkit is imported, so its fork handler is in place before any later fork.
"""

from __future__ import annotations

from pathlib import Path

from dropkit.kernels import _build

__all__ = ["COMPILE_FLAGS", "SOURCE", "SOURCES", "load"]

SOURCE = Path(__file__).with_name("csrc") / "dropkit_ops.cpp"
#: Every source of the library: the primitives, then DropBlock's kernel.
SOURCES = (SOURCE, SOURCE.with_name("dropkit_blocks.cpp"))

COMPILE_FLAGS = (
    "-O3",
    "-march=native",
    # One IEEE rounding per operation, as torch's own CPU ops: no fused multiply-add, no fast-math.
    "-ffp-contract=off",
    "-fno-fast-math",
    # at::parallel_for's OpenMP region is inline in the header; compiled with -fopenmp but linked
    # without it, the library uses the OpenMP runtime libtorch_cpu loaded (one thread team).
    "-fopenmp",
    "-fvisibility=hidden",
)


def load() -> bool:
    """Build (once per machine and torch) and load the C++ kernels; False, after one warning
    that names the cause, where that is impossible (the reference kernels then serve)."""
    return _build.load_library("dropkit_ops", list(SOURCES), extra_cflags=COMPILE_FLAGS) is not None
