"""dropkit: the dropout family of regularizers for PyTorch, exact, reproducible and fast on the CPU.

Importing dropkit registers its custom operators and compiles nothing; the numba kernels are
compiled (or loaded from numba's on-disk cache) on first use.
"""

from dropkit import functional, nn, rng
from dropkit.kernels import get_backend, set_backend

__version__ = "0.1.0"

__all__ = ["__version__", "functional", "get_backend", "nn", "rng", "set_backend"]
