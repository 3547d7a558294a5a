"""dropkit: the dropout family of regularizers for PyTorch, exact, reproducible and fast on the CPU.

Importing dropkit registers its custom operators and compiles nothing; the numba kernels are
compiled (or loaded from numba's on-disk cache) on first use.
"""

from dropkit import constraints, functional, mc, nn, ops, rng
from dropkit.constraints import MaxNorm, max_norm_
from dropkit.convert import convert
from dropkit.kernels import get_backend, set_backend
from dropkit.replace import replace_dropout

__version__ = "0.1.0"

__all__ = [
    "MaxNorm",
    "__version__",
    "constraints",
    "convert",
    "functional",
    "get_backend",
    "max_norm_",
    "mc",
    "nn",
    "ops",
    "replace_dropout",
    "rng",
    "set_backend",
]
