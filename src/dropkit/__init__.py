"""dropkit: the dropout family of regularizers for PyTorch, exact, reproducible and fast on the CPU.

Importing dropkit registers its operators with torch's dispatcher and loads their compiled CPU
kernels, built once per machine and torch version into a per-user cache (see dropkit.kernels.cpu);
where they cannot be built, the plain-torch reference kernels serve, with the same masks.
"""

from dropkit import constraints, functional, mc, nn, ops, rng
from dropkit.constraints import MaxNorm, max_norm_
from dropkit.convert import convert
from dropkit.kernels import backend
from dropkit.replace import replace_dropout

__version__ = "0.1.0"

__all__ = [
    "MaxNorm",
    "__version__",
    "backend",
    "constraints",
    "convert",
    "functional",
    "max_norm_",
    "mc",
    "nn",
    "ops",
    "replace_dropout",
    "rng",
]
