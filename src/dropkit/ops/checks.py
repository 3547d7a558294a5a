"""Argument checks: one function per argument, shared by every functional op and every module.

Where torch takes the same argument (``p`` of the dropout family, the input tensor) the accepted
values, the exception types and the messages are torch's; for dropkit's own arguments the error
names the argument, the value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from dropkit import rng
from dropkit.kernels import MAX_STREAM_INDEX

__all__ = [
    "check_branches",
    "check_choice",
    "check_conv2d_args",
    "check_conv2d_shapes",
    "check_drop_block_args",
    "check_drop_connect_tensors",
    "check_embedding_args",
    "check_fill",
    "check_flag",
    "check_floating",
    "check_generator",
    "check_ids",
    "check_index_list",
    "check_int",
    "check_module",
    "check_offset",
    "check_pair",
    "check_positive",
    "check_probability",
    "check_random",
    "check_real",
    "check_seed",
    "check_stream_args",
    "check_stream_end",
    "check_tensor",
    "check_tensors",
    "check_training",
]

#: The counter space of one seed: element ``i`` with offset ``o`` reads word ``i + o``, an int64.
# A call may read stream indices below this bound (one rule, the backends' own).
STREAM_END = MAX_STREAM_INDEX
#: The bound on a spatial size, stride or padding argument (a side of an image fits an int32).
MAX_EXTENT = 2**31 - 1


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


def check_int(
    value, name: str, *, op: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer (Python, NumPy or a one-element integer tensor), not a bool, in
    ``[minimum, maximum]`` (a bound on a size that drives a loop or an allocation)."""
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
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = [] if minimum is None else [f">= {minimum}"]
        allowed = " and ".join(bounds + ([] if maximum is None else [f"<= {maximum}"]))
        raise ValueError(f"{op}: {name} must be an integer {allowed}, got {value}")
    return value


def check_positive(value, name: str, *, op: str) -> int:
    return check_int(value, name, op=op, minimum=1)


def check_flag(value, name: str, *, op: str) -> bool:
    """A bool (or NumPy bool); integers, strings, None and tensors are refused, not read as truth
    values (torch reads ``inplace=`` by its truth value: dropkit is stricter)."""
    if type(value) is bool:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{op}: {name} must be a bool (True or False), got {type(value).__name__} {value!r}"
        )
    return bool(value)


def check_training(training, op: str) -> bool:
    """``training`` as torch's functionals take it: exactly a Python bool (torch's
    ``F.dropout(x, 0.5, training='no')``, ``training=1`` and ``training=np.True_`` are a
    ``TypeError`` "dropout(): argument 'train' (position 3) must be bool, not str")."""
    if type(training) is not bool:
        raise TypeError(
            f"{op}(): argument 'training' must be bool, not {type(training).__name__} "
            f"({training!r})"
        )
    return training


def check_choice(value, name: str, choices: Sequence[str], *, op: str) -> str:
    """One of ``choices``: a ``TypeError`` for a non-string, a ``ValueError`` for another string."""
    if isinstance(value, str) and value in choices:
        return value
    error = ValueError if isinstance(value, str) else TypeError
    raise error(f"{op}: {name} must be one of {tuple(choices)}, got {value!r}")


def check_tensor(input, op: str, name: str = "input", position: int = 1) -> torch.Tensor:
    """A dense tensor. torch's message for a non-tensor argument: ``dropout(): argument 'input'
    (position 1) must be Tensor, not list``; sparse, quantized and nested tensors are refused up
    front with a ``TypeError`` naming the argument (torch fails inside its kernels on them, or
    silently returns them in evaluation)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(
            f"{op}(): argument '{name}' (position {position}) must be Tensor, "
            f"not {type(input).__name__}"
        )
    if input.layout is not torch.strided or input.is_quantized or input.is_nested:
        if input.is_nested:
            kind = "nested"
        elif input.is_quantized:
            kind = f"quantized ({input.dtype})"
        else:
            kind = f"sparse ({input.layout})"
        raise TypeError(
            f"{op}(): argument '{name}' (position {position}) must be a dense (strided) tensor, "
            f"got a {kind} tensor; sparse, quantized and nested tensors are not supported "
            "(convert with .to_dense(), .dequantize() or .unbind() first)"
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
        check_tensor(value, op, f"{name}[{index}]")
    return list(values)


def check_branches(branches, op: str) -> None:
    """A non-empty list or tuple of floating tensors (``torch.fx`` proxies pass: a symbolic trace
    records the call and the traced graph checks the real tensors)."""
    from torch.fx import Proxy

    if not isinstance(branches, (list, tuple)) or not branches:
        check_tensors(branches, op, "branches")  # raises its error
    for index, branch in enumerate(branches):
        if not isinstance(branch, Proxy):
            check_floating(check_tensor(branch, op, f"branches[{index}]"), op, f"branches[{index}]")


def check_floating(input, op: str, name: str = "input") -> torch.Tensor:
    """A floating tensor (the caller ran :func:`check_tensor` on it first: not again here)."""
    if isinstance(input, torch.Tensor) and input.dtype.is_floating_point:
        return input
    check_tensor(input, op, name)
    raise TypeError(f"{op}: {name} must have a floating dtype, got {input.dtype}")


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
        if words <= STREAM_END:
            advice = f"use an offset <= {STREAM_END - words}"
        else:  # never a negative bound: no offset makes room for more words than there are
            advice = "the input (or the sizes passed) is too large for one seed's stream"
        raise ValueError(
            f"offset {offset} + the {words} stream words this call reads exceeds the counter "
            f"space of one seed (2**63 - 1 words); {advice}"
        )


def check_seed(seed) -> int | torch.Tensor:
    """A 64-bit seed (:func:`dropkit.rng.check_seed`); a one-element integer tensor is returned as
    it is (its value is not read: a traced seed stays in the graph)."""
    if isinstance(seed, torch.Tensor):
        return rng.check_seed_tensor(seed)
    return rng.check_seed(seed)


def check_generator(generator) -> torch.Generator | None:
    """None or a CPU ``torch.Generator`` (dropkit draws its 64-bit seeds on the CPU, whatever the
    input's device)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__} "
            f"{generator!r}"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (dropkit draws its seeds on the CPU for "
            f"every device), got a generator on {generator.device}"
        )
    return generator


def check_random(generator, seed) -> tuple[torch.Generator | None, int | torch.Tensor | None]:
    """A module's per-layer randomness: at most one of ``generator`` and ``seed``, each valid."""
    if generator is not None and seed is not None:
        raise ValueError("pass either seed or generator, not both")
    return check_generator(generator), (None if seed is None else check_seed(seed))


def check_stream_args(generator, seed, offset) -> None:
    """A functional's ``generator``, ``seed`` and ``offset``, checked up front (in evaluation too,
    where nothing is drawn): a wrong one is an error whatever the mode."""
    if generator is None and seed is None and type(offset) is int and 0 <= offset < STREAM_END:
        return  # the common case
    check_offset(offset)
    check_random(generator, seed)


def check_pair(value, name: str, *, op: str, minimum: int) -> list[int]:
    """An integer or a pair of integers (as ``torch.nn.functional.conv2d`` takes ``stride``,
    ``dilation`` and numeric ``padding``), each ``>= minimum`` and below ``2**31``."""
    if isinstance(value, (torch.Tensor, str, bytes)):
        values = None
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = [value, value]
    elif isinstance(value, Sequence):
        values = list(value)
    else:
        values = None
    if values is None or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in values
    ):
        raise TypeError(
            f"{op}: {name} must be an integer or a pair of integers, got {type(value).__name__} "
            f"{value!r}"
        )
    if len(values) != 2:
        raise ValueError(f"{op}: {name} must be an integer or a pair of integers, got {value!r}")
    values = [int(v) for v in values]
    if min(values) < minimum or max(values) > MAX_EXTENT:
        raise ValueError(f"{op}: {name} must be integers in [{minimum}, 2**31 - 1], got {value!r}")
    return values


def check_conv2d_args(stride, padding, dilation, groups, *,
                      op: str) -> tuple[list[int], list[int] | None, list[int], int]:  # fmt: skip
    """``conv2d``'s ``stride``, ``padding`` (an integer, a pair, ``"valid"`` or ``"same"``, not
    ``"same"`` with a stride), ``dilation`` and ``groups``: torch's rules, checked before any
    convolution runs. Returns them as pairs of ints (padding None for ``"same"``) and an int."""
    strides = check_pair(stride, "stride", op=op, minimum=1)
    if isinstance(padding, str):
        check_choice(padding, "padding", ("valid", "same"), op=op)
        if padding == "same" and strides != [1, 1]:
            raise ValueError(
                f"{op}: padding='same' is not supported for strided convolutions, got "
                f"stride={stride!r}"
            )
        pads = [0, 0] if padding == "valid" else None
    else:
        pads = check_pair(padding, "padding", op=op, minimum=0)
    dilations = check_pair(dilation, "dilation", op=op, minimum=1)
    return strides, pads, dilations, check_int(groups, "groups", op=op, minimum=1,
                                               maximum=MAX_EXTENT)  # fmt: skip


def check_index_list(values, name: str, *, op: str, bound: int) -> list[int]:
    """A non-empty sequence of distinct integers in ``[0, bound)``."""
    if isinstance(values, (str, bytes, torch.Tensor)) or not isinstance(values, Sequence):
        raise TypeError(
            f"{op}: {name} must be a sequence of integers, got {type(values).__name__} {values!r}"
        )
    values = list(values)
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{op}: {name} must hold integers, got {type(value).__name__} {value!r} in "
                f"{values!r}"
            )
    values = [int(v) for v in values]
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{op}: {name} must be distinct integers, at least one, got {values}")
    if any(not 0 <= v < bound for v in values):
        raise ValueError(f"{op}: {name} must lie in [0, {bound - 1}], got {values}")
    return values


def check_module(value, name: str, *, op: str, optional: bool = False):
    """A ``torch.nn.Module`` (or None when ``optional``)."""
    if (value is None and optional) or isinstance(value, torch.nn.Module):
        return value
    allowed = "an nn.Module or None" if optional else "an nn.Module"
    raise TypeError(f"{op}: {name} must be {allowed}, got {type(value).__name__}")


def check_embedding_args(num_embeddings: int, padding_idx, max_norm, norm_type, scale_grad_by_freq,
                         sparse, *, op: str) -> tuple:  # fmt: skip
    """``torch.nn.functional.embedding``'s options, checked with clear errors: ``padding_idx`` an
    integer in ``[-V, V)`` or None (torch: an ``AssertionError``), ``max_norm`` None or a finite
    number > 0, ``norm_type`` a finite number > 0 (torch accepts NaN and negative values), the
    flags exactly bools (as torch). Returns them as torch takes them: ``(padding_idx >= 0 or None,
    max_norm, norm_type, scale_grad_by_freq, sparse)``."""
    if padding_idx is not None:
        padding_idx = check_int(padding_idx, "padding_idx", op=op, minimum=-num_embeddings,
                                maximum=num_embeddings - 1)  # fmt: skip
        if padding_idx < 0:
            padding_idx += num_embeddings
    if max_norm is not None:
        max_norm = check_real(max_norm, "max_norm", op=op, low=0.0, low_open=True)
    norm_type = check_real(norm_type, "norm_type", op=op, low=0.0, low_open=True)
    for name, value in (("scale_grad_by_freq", scale_grad_by_freq), ("sparse", sparse)):
        if type(value) is not bool:
            raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse


def check_drop_block_args(p, block_size, eps, normalize, border, per_channel, noise, op) -> tuple:
    """DropBlock's arguments (the functionals' and the modules'): ``p`` in [0, 1], ``block_size``
    an integer >= 1, ``eps`` > 0, ``normalize`` and ``border`` one of their names, the flags."""
    return (check_probability(p, op=op, what="drop probability"),
            check_int(block_size, "block_size", op=op, minimum=1, maximum=MAX_EXTENT),
            check_real(eps, "eps", op=op, low=0.0, low_open=True),
            check_choice(normalize, "normalize", ("sample", "batch", "none"), op=op),
            check_choice(border, "border", ("valid", "clip"), op=op),
            check_flag(per_channel, "per_channel", op=op),
            check_flag(noise, "noise", op=op))  # fmt: skip


def check_ids(ids: torch.Tensor, num_embeddings: int, op: str) -> None:
    """Embedding ids in ``[0, num_embeddings)``, checked on plain CPU tensors outside any tracer
    (elsewhere reading them would synchronise or break a trace; torch's own lookup then reports
    them)."""
    plain = (
        type(ids) is torch.Tensor
        and ids.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch._C._is_torch_function_mode_enabled()
        and not torch._C._functorch.is_functorch_wrapped_tensor(ids)
    )
    if ids.numel() and plain:
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= num_embeddings:
            raise ValueError(
                f"{op}: input ids must lie in [0, {num_embeddings - 1}] (the rows of weight), "
                f"got ids from {low} to {high}"
            )


def check_drop_connect_tensors(input, weight, bias, op: str) -> None:
    """``input``, ``weight`` and ``bias`` of a DropConnect layer: dense floating tensors of one
    dtype, ``weight`` ``(out, in)`` (linear: ``input (*, in)``) or ``(out, in/groups, kH, kW)``
    (conv2d), ``bias`` None or ``(out,)``."""
    check_tensor(input, op)
    check_tensor(weight, op, "weight", 2)
    check_floating(input, op)
    if weight.dtype != input.dtype:
        raise TypeError(f"{op}: weight must have input's dtype {input.dtype}, got {weight.dtype}")
    conv = op == "drop_connect_conv2d"
    if conv and (input.dim() not in (3, 4) or weight.dim() != 4):
        raise ValueError(
            f"drop_connect_conv2d expects (N, C, H, W) or (C, H, W) input and a 4-D weight, "
            f"got {input.dim()}-D input and {weight.dim()}-D weight"
        )
    if conv and 0 in weight.shape:
        raise ValueError(
            f"{op}: weight must have no empty dimension (out, in/groups, kH, kW), got shape "
            f"{tuple(weight.shape)}"
        )
    if not conv:
        if weight.dim() != 2:
            raise ValueError(
                f"{op}: weight must be 2-D (out_features, in_features), got shape "
                f"{tuple(weight.shape)}"
            )
        if input.dim() < 1 or input.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"{op}: input must have in_features = {weight.shape[1]} (weight's dim 1) as its "
                f"last dimension, got input of shape {tuple(input.shape)}"
            )
    if bias is not None:
        check_tensor(bias, op, "bias", 3)
        if bias.dtype != input.dtype or tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(
                f"{op}: bias must be None or a {input.dtype} tensor of shape "
                f"({weight.shape[0]},) (weight's output dimension), got a {bias.dtype} tensor of "
                f"shape {tuple(bias.shape)}"
            )


def check_conv2d_shapes(input, weight, stride, padding, dilation, groups) -> tuple:
    """``conv2d``'s arguments (:func:`~dropkit.ops.checks.check_conv2d_args`) and shapes: the
    input has ``weight.shape[1] * groups`` channels, ``groups`` divides the output channels and
    the dilated kernel fits the padded input (torch's rules, checked before anything runs).
    Returns ``(stride, padding, dilation, groups)`` as Python ints (NumPy integers included)."""
    op = "drop_connect_conv2d"
    strides, pads, dil, groups = check_conv2d_args(stride, padding, dilation, groups, op=op)
    if input.shape[-3] != weight.shape[1] * groups or weight.shape[0] % groups:
        raise ValueError(
            f"{op}: input must have weight.shape[1] * groups = {weight.shape[1]} * {groups} "
            f"channels and weight.shape[0] = {weight.shape[0]} must be divisible by groups, got "
            f"input of shape {tuple(input.shape)}"
        )
    if pads is not None:
        for d in range(2):
            span = dil[d] * (weight.shape[2 + d] - 1) + 1
            if input.shape[-2 + d] + 2 * pads[d] < span:
                raise ValueError(
                    f"{op}: the kernel (dilated extent {span}) does not fit the padded input: "
                    f"input {tuple(input.shape)}, padding={padding!r}, dilation={dilation!r}, "
                    f"weight {tuple(weight.shape)}"
                )
    return (
        tuple(strides),
        (padding if isinstance(padding, str) else tuple(pads)),
        tuple(dil),
        groups,
    )


def check_fill(fill: float, dtype: torch.dtype, op: str = "cutout") -> None:
    """``fill`` must be exactly an integer in the range of an integer ``dtype``, or finite in a
    floating one: it is not silently truncated, wrapped or rounded to infinity."""
    if dtype.is_floating_point:
        if abs(fill) > torch.finfo(dtype).max:
            raise ValueError(
                f"{op}: fill={fill!r} is not representable in the input's dtype {dtype} (it would "
                f"become infinite; |fill| <= {torch.finfo(dtype).max})"
            )
        return
    info = torch.iinfo(dtype)
    if fill != int(fill) or not info.min <= fill <= info.max:
        raise ValueError(
            f"{op}: fill={fill!r} must be an integer in [{info.min}, {info.max}] for the input's "
            f"dtype {dtype} (it would be truncated or wrapped)"
        )
