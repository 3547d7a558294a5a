"""Argument checks: one function per argument, shared by every functional op and every module.

Where torch takes the same argument (``p`` of the dropout family, the input tensor) the accepted
values, the exception types and the messages are torch's; for dropkit's own arguments the error
names the argument, the value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from dropkit import rng
from dropkit.kernels import MAX_STREAM_INDEX

__all__ = [
    "check_choice",
    "check_flag",
    "check_floating",
    "check_generator",
    "check_int",
    "check_offset",
    "check_positive",
    "check_probability",
    "check_real",
    "check_seed",
    "check_stream_end",
    "check_tensor",
    "check_tensors",
]

#: The counter space of one seed: element ``i`` with offset ``o`` reads word ``i + o``, an int64.
# A call may read stream indices below this bound (one rule, the backends' own).
STREAM_END = MAX_STREAM_INDEX


def _real(value, name: str, op: str) -> float:
    """``value`` as a float: Python/NumPy reals, bools and one-element real tensors (as torch)."""
    if type(value) is float:  # the common case first: every call of every op passes here
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            # torch's type here: the truth value of a many-element tensor is a RuntimeError
            raise RuntimeError(
                f"{op}(): argument '{name}' must be a number or a one-element tensor, got a "
                f"tensor of shape {tuple(value.shape)}"
            )
        if value.dtype.is_complex:
            raise TypeError(f"{op}(): argument '{name}' must be float, not a complex tensor")
        return float(value)
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{op}(): argument '{name}' must be float, not {type(value).__name__}")
    return float(value)


def check_probability(
    p, name: str = "p", *, op: str = "dropout", what: str = "dropout probability",
    closed: bool = True,
) -> float:  # fmt: skip
    """``p`` as a float in [0, 1] (``[0, 1)`` unless ``closed``), torch's way.

    torch's ``F.dropout`` takes ``True``, ``np.float32(0.5)`` and ``torch.tensor(0.5)``; NaN is a
    ``RuntimeError`` and a number outside the range a ``ValueError``, both
    "<what> has to be between 0 and 1, but got <p>"; anything else a ``TypeError``.
    """
    value = _real(p, name, op)
    if closed:
        message = f"{what} has to be between 0 and 1, but got {value}"
    else:
        message = f"{what} has to be in [0, 1), but got {value}"
    if math.isnan(value):
        raise RuntimeError(message)
    if not (0.0 <= value <= 1.0) or (not closed and value == 1.0):
        raise ValueError(message)
    return value


def check_real(value, name: str, *, op: str, low: float | None = None,
               low_open: bool = False) -> float:  # fmt: skip
    """A finite real number (``> low`` or ``>= low``); the error names ``name`` and the range."""
    result = _real(value, name, op)
    bad = math.isnan(result) or math.isinf(result)
    if low is not None:
        bad = bad or result < low or (low_open and result == low)
    if bad:
        bound = "" if low is None else f" {'>' if low_open else '>='} {low}"
        raise ValueError(f"{op}: {name} must be a finite number{bound}, got {value!r}")
    return result


def check_int(value, name: str, *, op: str, minimum: int | None = None) -> int:
    """An integer (Python, NumPy or a one-element integer tensor), not a bool, ``>= minimum``."""
    if (
        isinstance(value, torch.Tensor)
        and value.numel() == 1
        and not (value.dtype.is_floating_point or value.dtype.is_complex)
        and value.dtype != torch.bool
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be an integer >= {minimum}, got {value}")
    return value


def check_positive(value, name: str, *, op: str) -> int:
    return check_int(value, name, op=op, minimum=1)


def check_flag(value, name: str, *, op: str) -> bool:
    """A bool (or NumPy bool); integers and strings are refused, not read as truth values."""
    if not isinstance(value, (bool,)) and type(value).__name__ != "bool_":
        raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_choice(value, name: str, choices: Sequence[str], *, op: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{op}: {name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_tensor(input, op: str, name: str = "input", position: int = 1) -> torch.Tensor:
    """torch's message for a non-tensor argument: ``dropout(): argument 'input' (position 1) must
    be Tensor, not list``."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(
            f"{op}(): argument '{name}' (position {position}) must be Tensor, "
            f"not {type(input).__name__}"
        )
    return input


def check_tensors(values, op: str, name: str) -> list[torch.Tensor]:
    if not isinstance(values, (list, tuple)):
        raise TypeError(
            f"{op}(): argument '{name}' must be a non-empty list or tuple of tensors, "
            f"got {type(values).__name__}"
        )
    if not values:
        raise ValueError(f"{op}(): argument '{name}' must be a non-empty list of tensors, got []")
    for index, value in enumerate(values):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{op}(): {name}[{index}] must be a Tensor, not {type(value).__name__}")
    return list(values)


def check_floating(input, op: str) -> torch.Tensor:
    check_tensor(input, op)
    if not input.dtype.is_floating_point:
        raise TypeError(f"{op}: input must have a floating dtype, got {input.dtype}")
    return input


def check_offset(offset) -> int:
    """The stream offset: an integer in ``[0, 2**63 - 1)``."""
    if type(offset) is int and 0 <= offset < STREAM_END:  # the common case, without the ABC check
        return offset
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral):
        raise TypeError(f"offset must be an integer >= 0, got {type(offset).__name__} {offset!r}")
    offset = int(offset)
    if not 0 <= offset < STREAM_END:
        raise ValueError(f"offset must be an integer in [0, 2**63 - 1), got {offset}")
    return offset


def check_stream_end(offset: int, words: int) -> None:
    """A call reads stream words ``offset .. offset + words - 1``: all below ``2**63 - 1``."""
    if offset + words > STREAM_END:
        raise ValueError(
            f"offset {offset} + the {words} stream words this call reads exceeds the counter "
            f"space of one seed (2**63 - 1 words); use an offset <= {STREAM_END - words}"
        )


def check_seed(seed) -> int | torch.Tensor:
    """A 64-bit seed (:func:`dropkit.rng.check_seed`); a one-element integer tensor is returned as
    it is (its value is not read: a traced seed stays in the graph)."""
    if isinstance(seed, torch.Tensor):
        return rng.check_seed_tensor(seed)
    return rng.check_seed(seed)


def check_generator(generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator
