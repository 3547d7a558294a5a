"""Every public function and module of dropkit under bad and edge arguments (issue 17, item 2).

Each example takes a valid call and replaces one argument by a generated value: a wrong type,
NaN/inf/negative/huge numbers, bools, strings, None, lists, odd tensors (0-d, empty, many
dimensions, integer, complex, sparse, quantized, nested, meta, non-contiguous), odd generators and
huge sizes. An oracle says what each value must give, and only two outcomes pass:

- a result, where the value is valid (its shape, dtype and device as documented), or
- a ``TypeError`` / ``ValueError`` / ``RuntimeError`` of the type the oracle names (``TypeError``
  for a wrong type, ``ValueError`` for a wrong value, torch's own types where dropkit mirrors
  torch), whose message names the argument and whose last traceback frame is in dropkit's own
  code (not raised from deep inside torch).

Never a hang (each call runs under an alarm and the examples under a hypothesis deadline), a
crash, nonsense accepted or an unclear error. The audit's concrete cases are explicit tests below.
"""

from __future__ import annotations

import datetime
import math
import numbers
import os
import re
import signal
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import constraints, mc
from dropkit import functional as F
from dropkit import nn as dnn
from dropkit.functional.cutout import MAX_HOLES
from dropkit.functional.drop_connect import MAX_SAMPLES
from dropkit.functional.drop_path import MAX_LAYERS

DROPKIT_SRC = str(Path(dropkit.__file__).resolve().parent)
STREAM_END = 2**63 - 1
EXTENT = 2**31 - 1
OK, ANY = "ok", "any"  # must succeed / may succeed or raise a clear error
FOREIGN = "foreign"  # may raise anything: the value reaches the user's own code (a model)
CALL_LIMIT_S = 20  # a call running longer is a hang (the alarm interrupts it)


class Hang(Exception):
    pass


# -- the oracles: value -> OK, ANY or the exception type it must raise ----------------------------
def _real(v):
    """``v`` as a float the way dropkit (and torch's ``p``) reads numbers, or the error type."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return RuntimeError
        if v.is_complex():
            return TypeError
        return float(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return TypeError


def prob(closed: bool = True):
    def oracle(v):
        f = _real(v)
        if not isinstance(f, float):
            return f
        if math.isnan(f):
            return RuntimeError
        return OK if 0.0 <= f <= 1.0 and (closed or f < 1.0) else ValueError

    return oracle


def _int(v):
    if isinstance(v, torch.Tensor):
        if (
            v.numel() == 1
            and not (v.is_floating_point() or v.is_complex())
            and v.dtype != torch.bool
        ):
            return int(v)
        return TypeError
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        return TypeError
    return int(v)


def integer(minimum=None, maximum=None, safe_max=None, tensors=True):
    def oracle(v):
        if not tensors and isinstance(v, torch.Tensor):
            return TypeError
        i = _int(v)
        if not isinstance(i, int):
            return i
        if (minimum is not None and i < minimum) or (maximum is not None and i > maximum):
            return ValueError
        if safe_max is not None and i > safe_max:
            return "skip"  # valid, but would allocate or loop too much for a test
        return OK

    return oracle


def real(low=None, low_open=False, no_bool=False, high=None, tensors=True):
    def oracle(v):
        if no_bool and isinstance(v, (bool, np.bool_)):
            return TypeError
        if no_bool and isinstance(v, torch.Tensor) and v.dtype == torch.bool:
            return TypeError
        if not tensors and isinstance(v, torch.Tensor):
            return TypeError
        f = _real(v)
        if not isinstance(f, float):
            return f
        if not math.isfinite(f):
            return ValueError
        if low is not None and (f < low or (low_open and f == low)):
            return ValueError
        if high is not None and abs(f) > high:
            return ValueError
        return OK

    return oracle


def optional(oracle):
    return lambda v: OK if v is None else oracle(v)


def flag(v):
    return OK if isinstance(v, (bool, np.bool_)) else TypeError


def training(v):
    return OK if type(v) is bool else TypeError  # torch: exactly a bool


def choice(*options, other=TypeError):
    def oracle(v):
        if isinstance(v, str):
            return OK if v in options else ValueError
        return other

    return oracle


def seed(v):
    if v is None:
        return OK
    if isinstance(v, torch.Tensor):
        ok = v.numel() == 1 and not (v.is_floating_point() or v.is_complex())
        return OK if ok and v.dtype != torch.bool else TypeError
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        return TypeError
    return OK if -(2**63) <= int(v) < 2**64 else ValueError


def offset(v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        return TypeError
    v = int(v)
    if not 0 <= v < STREAM_END:
        return ValueError
    return OK if v < 2**40 else ANY  # near the end: the call's words may not fit (a ValueError)


def generator(v):
    if v is None or (isinstance(v, torch.Generator) and v.device.type == "cpu"):
        return OK
    return TypeError


def callable_or_none(v):
    if v is None or v is IDENTITY:
        return OK
    return FOREIGN if callable(v) else TypeError  # the user's function runs on the output


def pair(minimum, strings=(), fits=None, safe_max=None):
    """An int or a pair of ints >= ``minimum`` (or one of ``strings``); a valid value for which
    ``fits`` is false makes the convolution refuse the shapes (a ValueError); values over
    ``safe_max`` are valid but too large to run here."""

    def oracle(v):
        if isinstance(v, str):
            return OK if v in strings else (ValueError if strings else TypeError)
        if isinstance(v, (bool, np.bool_, torch.Tensor, bytes)):
            return TypeError
        if isinstance(v, numbers.Integral):
            values = [int(v)] * 2
        elif isinstance(v, Sequence):
            values = list(v)
            if not all(
                isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))
                for x in values
            ):
                return TypeError
            if len(values) != 2:
                return ValueError
        else:
            return TypeError
        if not all(minimum <= int(x) <= EXTENT for x in values):
            return ValueError
        if safe_max is not None and max(values) > safe_max:
            return "skip"
        return OK if fits is None or all(fits(int(x)) for x in values) else ValueError

    return oracle


def module_or(kind_ok=torch.nn.Module, optional_=False):
    def oracle(v):
        if v is None and optional_:
            return OK
        return OK if isinstance(v, kind_ok) else TypeError

    return oracle


def exotic_then(rest: Callable):
    """A tensor argument: non-tensors, sparse, quantized and nested tensors are TypeErrors;
    meta tensors may run or be refused; otherwise ``rest(tensor)``."""

    def oracle(t):
        if not isinstance(t, torch.Tensor):
            return TypeError
        if t.layout is not torch.strided or t.is_quantized or t.is_nested:
            return TypeError
        if t.device.type == "meta":
            return ANY
        return rest(t)

    return oracle


def floating(ranks=None, rank_error=ValueError):
    """A floating input of one of ``ranks`` (a tuple, or a predicate of the rank; any rank when
    None). A tensor wrong in both ways may report either."""

    def rest(t):
        rank_ok = ranks is None or (ranks(t.dim()) if callable(ranks) else t.dim() in ranks)
        if not t.is_floating_point():
            return TypeError if rank_ok else (TypeError, rank_error)
        return OK if rank_ok else rank_error

    return exotic_then(rest)


def any_tensor(t):
    return ANY


TENSOR_ANY = exotic_then(any_tensor)


# -- the generated values -------------------------------------------------------------------------
def IDENTITY(t):
    return t


ODD = [
    None, "a", "", "inverted ", b"x", [], [1], [1.5], (1, 2), (2, 2, 2), {}, object(),
    0, 1, 2, 3, -1, 7, 2**31, 2**31 - 1, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 4097,
    2**20 + 1, 0.0, 0.5, 1.0, 1.5, -0.1, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf,
    True, False, 1 + 1j, np.float32(0.5), np.float64(math.nan), np.int64(3), np.int64(-2),
    np.bool_(True), IDENTITY, "batch", "row", "local", "global", "inverted", "classic", "valid",
    "same", "sample", "none", "clip", "zeros", "auto", "weight_scaling", "moment_matching",
    "dropkit", "torch",
]  # fmt: skip


def _tensors():
    """Fresh tensor-like odd values (built per example: some calls write in place)."""
    return [
        lambda: torch.tensor(0.5),
        lambda: torch.tensor(3),
        lambda: torch.tensor([1, 2]),
        lambda: torch.tensor(True),
        lambda: torch.tensor(1 + 1j),
        lambda: torch.tensor(math.nan),
        lambda: torch.Generator(),
        lambda: torch.nn.Linear(2, 2),
    ]


ODD_TENSORS = _tensors()
VALUES = st.one_of(
    st.sampled_from(ODD),
    st.sampled_from(ODD_TENSORS).map(lambda make: make()),
    st.integers(-(2**66), 2**66),
    st.integers(-3, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
)


def _quantized(t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates quantized tensors
        return torch.quantize_per_tensor(t.float(), 0.1, 0, torch.qint8)


def _flat2d(t):
    return t.reshape(t.shape[0], -1) if t.dim() >= 1 else t.reshape(1, 1)


# tensor transforms of an argument's valid value: name -> function (None where not applicable)
TRANSFORMS: dict[str, Callable[[torch.Tensor], object]] = {
    "same": lambda t: t.clone(),
    "float64": lambda t: t.double(),
    "float16": lambda t: t.half(),
    "bfloat16": lambda t: t.bfloat16(),
    "int64": lambda t: (t * 3).long(),
    "uint8": lambda t: (t.abs() * 3).to(torch.uint8),
    "bool": lambda t: t > 0,
    "complex64": lambda t: t.to(torch.complex64),
    "sparse_coo": lambda t: t.to_sparse(),
    "sparse_csr": lambda t: _flat2d(t).to_sparse_csr(),
    "quantized": lambda t: _quantized(t),
    "nested": lambda t: torch.nested.nested_tensor([t.clone(), t.clone()]),
    "jagged": lambda t: torch.nested.nested_tensor([_flat2d(t), _flat2d(t)], layout=torch.jagged),
    "meta": lambda t: t.to("meta"),
    "transposed": lambda t: t.transpose(0, -1) if t.dim() >= 2 else t.clone(),
    "0-d": lambda t: t.reshape(-1)[0].clone() if t.numel() else t.new_zeros(()),
    "empty": lambda t: t[:0] if t.dim() else t.new_zeros(0),
    "empty-last": lambda t: t[..., :0] if t.dim() else t.new_zeros(0),
    "more-dims": lambda t: t[None].clone(),
    "fewer-dims": lambda t: t[0].clone() if t.dim() else t,
    "many-dims": lambda t: t.reshape(*t.shape, *[1] * 24),
    "nan": lambda t: torch.full_like(t, math.nan) if t.is_floating_point() else t,
    "inf": lambda t: torch.full_like(t, math.inf) if t.is_floating_point() else t,
    "requires_grad": lambda t: t.clone().requires_grad_() if t.is_floating_point() else t,
    "list": lambda t: t.tolist(),
    "numpy": lambda t: t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy(),
    "big-batch": lambda t: t.expand(64, *t.shape[1:]) if t.dim() and t.shape[0] == 1 else t,
}


# -- the targets ----------------------------------------------------------------------------------
@dataclass
class Target:
    """``call(**kwargs)`` with valid ``base()`` keyword arguments; ``kinds``: argument -> oracle;
    ``tensors``: the arguments that take tensors (varied by :data:`TRANSFORMS`); ``check``:
    (result, kwargs) -> None, asserting what a valid call returns; ``aliases``: other words an
    error may name an argument by."""

    name: str
    call: Callable
    base: Callable[[], dict]
    kinds: dict[str, Callable]
    tensors: tuple[str, ...] = ()
    check: Callable | None = None
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


def same_as(arg):
    """The result has ``kwargs[arg]``'s shape, dtype and device."""

    def check(out, kw):
        x = kw[arg]
        assert isinstance(out, torch.Tensor)
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device

    return check


def shape_is(fn):
    def check(out, kw):
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(fn(kw)), out.shape

    return check


STREAM = {"generator": generator, "seed": seed, "offset": offset}
DROPOUT_ALIASES = {"p": ("probability",), "input": ("dimensions", "dimension", "dim")}


def at_least(n):
    return lambda rank: rank >= n


def dropout_like(name, fn, shape, extra=None, ranks=None, rank_error=ValueError, mode=True,
                 closed=True, train_default=True, inplace=True):  # fmt: skip
    kinds = {"input": floating(ranks, rank_error), "p": prob(closed), "training": training,
             **STREAM}  # fmt: skip
    if inplace:
        kinds["inplace"] = flag
    if mode:
        kinds["mode"] = choice("inverted", "classic")
    kinds.update(extra or {})
    return Target(
        name, fn, lambda: {"input": torch.randn(*shape), "p": 0.5, "training": True},
        kinds, ("input",), same_as("input"), DROPOUT_ALIASES,
    )  # fmt: skip


def _dropout_values(out, kw):
    """dropout's invariant: each element is 0 or ``x * scale`` (training), ``x`` or ``x (1-p)``
    (evaluation), with the input's shape, dtype and device."""
    same_as("input")(out, kw)
    x = kw["input"]
    if x.device.type == "meta" or kw.get("inplace") or not bool(torch.isfinite(x).all()):
        return  # nothing to compare against (written in place, or NaN/inf propagate)
    p, classic = _real(kw["p"]), kw.get("mode") == "classic"
    x, y = x.double(), out.double()
    if not kw["training"]:
        assert torch.allclose(y, x * (1.0 - p) if classic else x, rtol=1e-2, atol=1e-6)
        return
    scale = 1.0 if classic else (0.0 if p == 1.0 else 1.0 / (1.0 - p))
    kept = torch.isclose(y, x * scale, rtol=1e-2, atol=1e-6)
    assert bool((kept | (y == 0)).all())


def _drop_connect_linear_base():
    return {"input": torch.randn(3, 4), "weight": torch.randn(2, 4), "bias": torch.randn(2),
            "p": 0.5, "training": True}  # fmt: skip


def _drop_connect_conv_base():
    return {"input": torch.randn(2, 4, 5, 5), "weight": torch.randn(2, 4, 3, 3),
            "bias": torch.randn(2), "p": 0.5, "training": True}  # fmt: skip


DROP_CONNECT = {
    "weight": TENSOR_ANY, "bias": optional(TENSOR_ANY), "p": prob(), "training": training,
    "per_sample": flag, "mode": choice("inverted", "classic"),
    "inference": choice("weight_scaling", "moment_matching"),
    "samples": integer(1, MAX_SAMPLES, safe_max=4096), "activation": callable_or_none, **STREAM,
}  # fmt: skip
BLOCK = {
    "p": prob(), "block_size": integer(1, EXTENT), "inplace": flag, "eps": real(0.0, True),
    "training": training, "per_channel": flag, "normalize": choice("sample", "batch", "none"),
    "border": choice("valid", "clip"), "noise": flag, **STREAM,
}  # fmt: skip


def _noise_shape(v):
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        return TypeError
    for n in v:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
            return TypeError
        if n is not None and n < 1:
            return ValueError
    if len(v) != 4:
        return ValueError
    return OK if all(n in (None, 1) or n == s for n, s in zip(v, (2, 3, 4, 4))) else ValueError


def _branches(v):
    if not isinstance(v, (list, tuple)) or isinstance(v, torch.Tensor):
        return TypeError
    if not v:
        return ValueError
    return ANY


def _block_sizes(v):
    if isinstance(v, Sequence) and not isinstance(v, (str, bytes)):
        return ANY  # a list of sides
    return integer(1, 7)(v)


def _linear_input(t):
    if not t.is_floating_point():
        return TypeError
    if t.dtype != torch.float32:
        return TypeError  # the weight's dtype
    return OK if t.dim() >= 1 and t.shape[-1] == 4 else ValueError


def _conv_input(t):
    if not t.is_floating_point():
        return TypeError
    if t.dtype != torch.float32:
        return TypeError  # the weight's dtype
    fits = t.dim() in (3, 4) and t.shape[-3] == 4 and min(t.shape[-2:]) >= 3
    return OK if fits else ValueError


def _spatial(v):
    if isinstance(v, (str, bytes, torch.Tensor)) or not isinstance(v, Sequence):
        return TypeError
    return ANY


FUNCTIONALS = [
    Target(
        "dropout",
        F.dropout,
        lambda: {"input": torch.randn(2, 3, 4), "p": 0.5, "training": True},
        {
            "input": floating(),
            "p": prob(),
            "training": training,
            "inplace": flag,
            "mode": choice("inverted", "classic"),
            **STREAM,
        },
        ("input",),
        lambda out, kw: _dropout_values(out, kw),
        DROPOUT_ALIASES,
    ),
    dropout_like(
        "dropout1d", F.dropout1d, (2, 3, 4), {"channels_last": flag}, (2, 3), RuntimeError
    ),  # fmt: skip
    dropout_like(
        "dropout2d", F.dropout2d, (2, 3, 4, 4), {"channels_last": flag}, at_least(2), RuntimeError
    ),
    dropout_like(
        "dropout3d",
        F.dropout3d,
        (2, 3, 2, 2, 2),
        {"channels_last": flag},
        at_least(1),
        RuntimeError,
    ),  # fmt: skip
    dropout_like("alpha_dropout", F.alpha_dropout, (2, 3, 4), mode=False),
    dropout_like(
        "feature_alpha_dropout",
        F.feature_alpha_dropout,
        (2, 3, 4),
        mode=False,
        ranks=at_least(2),
        rank_error=RuntimeError,
    ),  # fmt: skip
    dropout_like("gaussian_dropout", F.gaussian_dropout, (2, 3, 4), mode=False, closed=False),
    Target(
        "locked_dropout",
        F.locked_dropout,
        lambda: {"input": torch.randn(5, 2, 3), "p": 0.5, "training": True},
        {
            "input": floating((3,)),
            "p": prob(),
            "training": training,
            "batch_first": flag,
            "inplace": flag,
            "mode": choice("inverted", "classic"),
            **STREAM,
        },
        ("input",),
        same_as("input"),
        DROPOUT_ALIASES,
    ),  # fmt: skip
    Target(
        "broadcast_dropout",
        F.broadcast_dropout,
        lambda: {
            "input": torch.randn(2, 3, 4, 4),
            "p": 0.5,
            "training": True,
            "noise_shape": (None, 1, 1, None),
        },
        {
            "input": floating((4,)),
            "p": prob(),
            "training": training,
            "inplace": flag,
            "noise_shape": _noise_shape,
            "mode": choice("inverted", "classic"),
            **STREAM,
        },
        ("input",),
        same_as("input"),
        {**DROPOUT_ALIASES, "input": ("input", "noise_shape")},
    ),  # fmt: skip
    Target(
        "drop_path",
        F.drop_path,
        lambda: {"x": torch.randn(4, 3), "drop_prob": 0.5, "training": True},
        {
            "x": floating(at_least(1)),
            "drop_prob": prob(),
            "training": training,
            "scale_by_keep": flag,
            **STREAM,
        },
        ("x",),
        same_as("x"),
        {"x": ("input", "batch dimension")},
    ),  # fmt: skip
    Target(
        "stochastic_depth",
        F.stochastic_depth,
        lambda: {"input": torch.randn(4, 3), "p": 0.5, "mode": "row", "training": True},
        {
            "input": floating(at_least(1)),
            "p": prob(),
            "mode": choice("batch", "row", other=ValueError),
            "training": training,
            **STREAM,
        },
        ("input",),
        same_as("input"),
        {"p": ("probability",), "input": ("batch dimension",)},
    ),  # fmt: skip
    Target(
        "drop_block2d",
        F.drop_block2d,
        lambda: {"input": torch.randn(2, 3, 6, 6), "p": 0.3, "block_size": 3, "training": True},
        {"input": floating((4,)), **BLOCK},
        ("input",),
        same_as("input"),
        {"p": ("probability",)},
    ),  # fmt: skip
    Target(
        "drop_block3d",
        F.drop_block3d,
        lambda: {"input": torch.randn(2, 2, 4, 4, 4), "p": 0.3, "block_size": 2, "training": True},
        {"input": floating((5,)), **BLOCK},
        ("input",),
        same_as("input"),
        {"p": ("probability",)},
    ),  # fmt: skip
    Target(
        "cutout",
        F.cutout,
        lambda: {"input": torch.randn(2, 3, 8, 8), "size": 3, "training": True},
        {
            "input": exotic_then(
                lambda t: (
                    TypeError
                    if t.dtype == torch.bool or t.is_complex()
                    else (OK if t.dim() in (3, 4) else ValueError)
                )
            ),
            "size": integer(1, EXTENT),
            "n_holes": integer(0, MAX_HOLES),
            "fill": real(no_bool=True, high=torch.finfo(torch.float32).max),
            "training": training,
            **STREAM,
        },
        ("input",),
        same_as("input"),
    ),  # fmt: skip
    Target(
        "drop_connect_linear",
        F.drop_connect_linear,
        _drop_connect_linear_base,
        {"input": exotic_then(_linear_input), **DROP_CONNECT},
        ("input", "weight", "bias"),
        shape_is(lambda kw: (*kw["input"].shape[:-1], kw["weight"].shape[0])),
        {"p": ("probability",), "input": ("in_features", "batch dimension")},
    ),  # fmt: skip
    Target(
        "drop_connect_conv2d",
        F.drop_connect_conv2d,
        _drop_connect_conv_base,
        {
            "input": exotic_then(_conv_input),
            **DROP_CONNECT,
            "stride": pair(1),
            "padding": pair(0, ("valid", "same"), safe_max=8),
            "dilation": pair(1, fits=lambda v: 2 * v + 1 <= 5),
            "groups": lambda v: (
                lambda i: i if not isinstance(i, int) else (OK if i == 1 else ValueError)
            )(_int(v)),
        },
        ("input", "weight", "bias"),
        None,
        {"p": ("probability",), "input": ("channels", "kernel", "batched")},
    ),  # fmt: skip
    Target(
        "embedding_dropout",
        F.embedding_dropout,
        lambda: {
            "input": torch.tensor([[1, 2], [3, 0]]),
            "weight": torch.randn(5, 3),
            "p": 0.5,
            "training": True,
        },
        {
            "input": exotic_then(
                lambda t: (
                    TypeError
                    if (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
                    else ANY
                )
            ),
            "weight": exotic_then(
                lambda t: OK if t.is_floating_point() and t.dim() == 2 and t.shape[0] >= 4 else ANY
            ),
            "p": prob(),
            "training": training,
            "padding_idx": optional(integer(-5, 4)),
            "max_norm": optional(real(0.0, True)),
            "norm_type": real(0.0, True),
            "scale_grad_by_freq": training,  # exactly a bool, as torch
            "sparse": training,
            **STREAM,
        },
        ("weight",),
        shape_is(lambda kw: (*kw["input"].shape, kw["weight"].shape[1])),
        {"p": ("probability",)},
    ),  # fmt: skip
    Target(
        "bias_dropout_add",
        F.bias_dropout_add,
        lambda: {
            "x": torch.randn(2, 3),
            "bias": torch.randn(3),
            "residual": torch.randn(2, 3),
            "p": 0.5,
            "training": True,
        },
        {
            "x": exotic_then(lambda t: ANY if t.is_floating_point() else TypeError),
            "bias": TENSOR_ANY,
            "residual": TENSOR_ANY,
            "p": prob(),
            "training": training,
            **STREAM,
        },
        ("x", "bias", "residual"),
        None,
        {"p": ("probability",), "x": ("residual", "bias"), "residual": ("x",), "bias": ("x",)},
    ),  # fmt: skip
    Target(
        "drop_branches",
        F.drop_branches,
        lambda: {"branches": [torch.randn(3, 2), torch.randn(3, 2)], "p": 0.5, "training": True},
        {
            "branches": _branches,
            "p": prob(),
            "training": training,
            "mode": choice("local", "global"),
            "column": optional(integer(0, 1)),
            **STREAM,
        },
        (),
        shape_is(lambda kw: kw["branches"][0].shape),
        {"p": ("probability",), "mode": ("column",), "column": ("mode",)},
    ),  # fmt: skip
    Target(
        "drop_block_gamma",
        F.drop_block_gamma,
        lambda: {"p": 0.5, "block_size": 3, "spatial": (7, 7)},
        {"p": prob(), "block_size": _block_sizes, "spatial": _spatial},
        check=lambda out, kw: float_in(out, 0.0, kw["p"]),
        aliases={"p": ("probability",), "spatial": ("block_size",)},
    ),  # fmt: skip
    Target(
        "linear_decay_rates",
        F.linear_decay_rates,
        lambda: {"p_last": 0.5, "num_layers": 4},
        {"p_last": prob(), "num_layers": integer(1, MAX_LAYERS, safe_max=4096)},
        check=lambda out, kw: decay_ok(out, kw),
    ),  # fmt: skip
]


def float_in(value, low, high):
    assert isinstance(value, float) and low <= value <= _real(high) + 1e-12, value


def decay_ok(out, kw):
    n, p = _int(kw["num_layers"]), _real(kw["p_last"])
    assert isinstance(out, list) and len(out) == n
    assert all(0.0 <= r <= p + 1e-12 for r in out) and math.isclose(out[-1], p)


# -- modules: their constructors (then a forward), and their forward's input ---------------------
MODULE_RANDOM = {"generator": generator, "seed": seed}


TRAINING_VALUE = [None]  # set by test_a_module_with_a_non_bool_training_flag


def module_target(name, cls, base, kinds, make_input, check=None, aliases=None, random=True):
    def call(**kw):
        layer = cls(**kw).train()
        if TRAINING_VALUE[0] is not None:
            layer.training = TRAINING_VALUE[0]
        x = make_input(layer)
        out = layer(*x) if isinstance(x, tuple) else layer(x)
        return out, x

    def check_ctor(result, kw):
        out, x = result
        want = x[0] if isinstance(x, tuple) else x
        if check is not None:
            check(out, want)
        else:
            assert out.shape == want.shape and out.dtype == want.dtype

    kinds = {**kinds, **MODULE_RANDOM} if random else kinds
    return Target(f"{name}()", call, base, kinds, (), check_ctor,
                  aliases or {"p": ("probability",)})  # fmt: skip


def forward_target(name, make, oracle, shape_check=None):
    """The module's forward with its input varied; ``make()`` -> (layer, valid input)."""

    def call(input):
        layer, _ = make()
        return layer(input)

    return Target(
        f"{name}.forward",
        call,
        lambda: {"input": make()[1]},
        {"input": oracle},
        ("input",),
        shape_check or same_as("input"),
        {"input": ("x", "dimensions", "dimension", "channels", "batch dimension", "branches")},
    )


def _x(*shape):
    return lambda layer: torch.randn(*shape)


DROPOUT_KINDS = {"p": prob(), "inplace": flag, "mode": choice("inverted", "classic")}
MODULES = [
    module_target("Dropout", dnn.Dropout, lambda: {"p": 0.5}, DROPOUT_KINDS, _x(2, 3)),
    module_target(
        "Dropout1d",
        dnn.Dropout1d,
        lambda: {"p": 0.5},
        {**DROPOUT_KINDS, "channels_last": flag},
        _x(2, 3, 4),
    ),  # fmt: skip
    module_target(
        "Dropout2d",
        dnn.Dropout2d,
        lambda: {"p": 0.5},
        {**DROPOUT_KINDS, "channels_last": flag},
        _x(2, 3, 4, 4),
    ),  # fmt: skip
    module_target(
        "Dropout3d",
        dnn.Dropout3d,
        lambda: {"p": 0.5},
        {**DROPOUT_KINDS, "channels_last": flag},
        _x(2, 3, 2, 2, 2),
    ),  # fmt: skip
    module_target(
        "LockedDropout",
        dnn.LockedDropout,
        lambda: {"p": 0.5},
        {**DROPOUT_KINDS, "batch_first": flag},
        _x(4, 2, 3),
    ),  # fmt: skip
    module_target(
        "BroadcastDropout",
        dnn.BroadcastDropout,
        lambda: {"p": 0.5, "noise_shape": (None, 1, 1, None)},
        {**DROPOUT_KINDS, "noise_shape": _noise_shape},
        _x(2, 3, 4, 4),
    ),  # fmt: skip
    module_target(
        "AlphaDropout",
        dnn.AlphaDropout,
        lambda: {"p": 0.5},
        {"p": prob(), "inplace": flag},
        _x(2, 3),
    ),  # fmt: skip
    module_target(
        "FeatureAlphaDropout",
        dnn.FeatureAlphaDropout,
        lambda: {"p": 0.5},
        {"p": prob(), "inplace": flag},
        _x(2, 3, 4),
    ),  # fmt: skip
    module_target(
        "GaussianDropout",
        dnn.GaussianDropout,
        lambda: {"p": 0.5},
        {"p": prob(False), "inplace": flag},
        _x(2, 3),
    ),  # fmt: skip
    module_target(
        "DropPath",
        dnn.DropPath,
        lambda: {"drop_prob": 0.5},
        {"drop_prob": prob(), "scale_by_keep": flag},
        _x(4, 3),
    ),  # fmt: skip
    module_target(
        "StochasticDepth",
        dnn.StochasticDepth,
        lambda: {"p": 0.5, "mode": "row"},
        {"p": prob(), "mode": choice("batch", "row", other=ValueError)},
        _x(4, 3),
    ),
    module_target(
        "DropBlock2d",
        dnn.DropBlock2d,
        lambda: {"p": 0.3, "block_size": 3},
        {k: v for k, v in BLOCK.items() if k not in ("training", "offset")},
        _x(2, 3, 6, 6),
    ),  # fmt: skip
    module_target(
        "DropBlock3d",
        dnn.DropBlock3d,
        lambda: {"p": 0.3, "block_size": 2},
        {k: v for k, v in BLOCK.items() if k not in ("training", "offset")},
        _x(2, 2, 4, 4, 4),
    ),  # fmt: skip
    module_target(
        "Cutout",
        dnn.Cutout,
        lambda: {"size": 3},
        {
            "size": integer(1, EXTENT),
            "n_holes": integer(0, MAX_HOLES),
            "fill": real(no_bool=True, high=torch.finfo(torch.float32).max),
        },
        _x(2, 3, 8, 8),
    ),  # fmt: skip
    module_target(
        "DropConnectLinear",
        dnn.DropConnectLinear,
        lambda: {"in_features": 4, "out_features": 2},
        {
            "in_features": integer(0, EXTENT, safe_max=64),
            "out_features": integer(0, EXTENT, safe_max=64),
            "bias": flag,
            **{
                k: v
                for k, v in DROP_CONNECT.items()
                if k not in ("weight", "bias", "training", "offset")
            },
        },
        lambda layer: torch.randn(3, layer.in_features),
        check=lambda out, x: None,
    ),  # fmt: skip
    module_target(
        "DropConnectConv2d",
        dnn.DropConnectConv2d,
        lambda: {"in_channels": 4, "out_channels": 2, "kernel_size": 3},
        {
            "in_channels": integer(1, EXTENT, safe_max=8),
            "out_channels": integer(1, EXTENT, safe_max=8),
            "kernel_size": pair(1, fits=lambda v: v <= 6, safe_max=64),
            "stride": pair(1),
            "padding": pair(0, ("valid", "same"), safe_max=8),
            "dilation": pair(1, fits=lambda v: 2 * v + 1 <= 6),
            "groups": lambda v: (
                lambda i: i if not isinstance(i, int) else (OK if i in (1, 2) else ValueError)
            )(_int(v)),
            "bias": flag,
            "padding_mode": choice("zeros", "reflect", "replicate", "circular"),
            **{
                k: v
                for k, v in DROP_CONNECT.items()
                if k not in ("weight", "bias", "training", "offset")
            },
        },
        lambda layer: torch.randn(2, layer.in_channels, 6, 6),
        check=lambda out, x: None,
        aliases={
            "p": ("probability",),
            "padding": ("stride", "kernel"),
            "kernel_size": ("kernel", "padding"),
            "groups": ("channels",),
            "in_channels": ("groups",),
            "out_channels": ("groups",),
            "dilation": ("kernel", "padding"),
            "stride": ("padding",),
        },
    ),
    module_target(
        "EmbeddingDropout",
        dnn.EmbeddingDropout,
        lambda: {"num_embeddings": 5, "embedding_dim": 3},
        {
            "num_embeddings": integer(1, EXTENT, safe_max=64),
            "embedding_dim": integer(0, EXTENT, safe_max=64),
            "p": prob(),
            "padding_idx": optional(integer(-5, 4)),
            "max_norm": optional(real(0.0, True)),
            "norm_type": real(0.0, True),
            "scale_grad_by_freq": training,  # exactly a bool, as torch
            "sparse": training,
        },
        lambda layer: torch.tensor([[0, 1], [2, 0]]) % layer.num_embeddings,
        check=lambda out, x: None,
        aliases={"p": ("probability",), "num_embeddings": ("padding_idx",)},
    ),
    module_target(
        "BiasDropoutAdd",
        dnn.BiasDropoutAdd,
        lambda: {"p": 0.5},
        {"p": prob()},
        lambda layer: (torch.randn(2, 3), torch.randn(3), torch.randn(2, 3)),
    ),
    module_target(
        "FractalDropPath",
        lambda **kw: _Joined(**kw),
        lambda: {"num_columns": 2},
        {
            "num_columns": integer(1, None, safe_max=2**62),
            "p": prob(),
            "global_fraction": prob(),
            "eval_column": optional(integer(0, 1)),
        },
        _x(3, 2),
        aliases={
            "p": ("probability",),
            "global_fraction": ("probability",),
            "num_columns": ("columns",),
            "eval_column": ("columns",),
        },
    ),
    module_target(
        "JoinDrop",
        lambda columns: _Joined(columns=columns),
        lambda: {"columns": [0, 1]},
        {"columns": lambda v: _columns(v)},
        _x(3, 2),
        random=False,
    ),  # fmt: skip
]


class _Joined(torch.nn.Module):
    """A FractalDropPath policy and a JoinDrop over two branches (both constructors' arguments)."""

    def __init__(self, columns=ANY, num_columns=2, **policy):
        super().__init__()
        self.policy = dnn.FractalDropPath(num_columns, **policy)
        if columns is ANY:  # the default: the first two columns (or the only one)
            columns = list(range(min(2, self.policy.num_columns)))
        self.join = dnn.JoinDrop(self.policy, columns)

    def forward(self, x):
        self.policy.sample()
        branches = [x] * len(self.join.columns)
        return self.join(branches)


class _BiasDropoutAddX(torch.nn.Module):
    """BiasDropoutAdd's forward with ``x`` varied (bias and residual fixed, float32 (2, 3))."""

    def __init__(self):
        super().__init__()
        self.layer = dnn.BiasDropoutAdd(0.5)

    def forward(self, x):
        return self.layer(x, torch.randn(3), torch.randn(2, 3))


def _columns(v):
    if isinstance(v, (str, bytes, torch.Tensor)) or not isinstance(v, Sequence):
        return TypeError
    if any(isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral) for c in v):
        return TypeError
    return OK if len(v) and len(set(v)) == len(v) and all(0 <= c < 2 for c in v) else ValueError


FORWARDS = [
    forward_target(
        "Dropout1d",
        lambda: (dnn.Dropout1d(0.5), torch.randn(2, 3, 4)),
        floating((2, 3), RuntimeError),
    ),
    forward_target(
        "Dropout3d",
        lambda: (dnn.Dropout3d(0.5), torch.randn(2, 3, 2, 2, 2)),
        floating(at_least(1), RuntimeError),
    ),
    forward_target(
        "LockedDropout", lambda: (dnn.LockedDropout(0.5), torch.randn(4, 2, 3)), floating((3,))
    ),
    forward_target(
        "BroadcastDropout",
        lambda: (dnn.BroadcastDropout(0.5, noise_shape=(None, 1, None)), torch.randn(2, 3, 4)),
        floating((3,)),
    ),
    forward_target("AlphaDropout", lambda: (dnn.AlphaDropout(0.5), torch.randn(2, 3)), floating()),
    forward_target(
        "FeatureAlphaDropout",
        lambda: (dnn.FeatureAlphaDropout(0.5), torch.randn(2, 3, 4)),
        floating(at_least(2), RuntimeError),
    ),
    forward_target(
        "DropBlock3d",
        lambda: (dnn.DropBlock3d(0.3, 2), torch.randn(2, 2, 4, 4, 4)),
        floating((5,)),
    ),
    forward_target(
        "BiasDropoutAdd",
        lambda: (_BiasDropoutAddX(), torch.randn(2, 3)),
        exotic_then(lambda t: ANY if t.is_floating_point() else TypeError),
        shape_check=lambda out, kw: None,
    ),
    forward_target(
        "DropBlockSchedule",
        lambda: (dnn.DropBlockSchedule(dnn.DropBlock2d(0.1, 3), 0.0, 0.1, 10), torch.randn(2)),
        lambda t: OK,  # the identity: any value passes through
        shape_check=lambda out, kw: None,
    ),
    forward_target("Dropout", lambda: (dnn.Dropout(0.5), torch.randn(2, 3)), floating()),
    forward_target(
        "Dropout2d",
        lambda: (dnn.Dropout2d(0.5), torch.randn(2, 3, 4, 4)),
        floating(at_least(2), RuntimeError),
    ),
    forward_target(
        "GaussianDropout", lambda: (dnn.GaussianDropout(0.5), torch.randn(2, 3)), floating()
    ),  # fmt: skip
    forward_target(
        "DropPath", lambda: (dnn.DropPath(0.5), torch.randn(4, 3)), floating(at_least(1))
    ),
    forward_target(
        "StochasticDepth",
        lambda: (dnn.StochasticDepth(0.5, "batch"), torch.randn(4, 3)),
        floating(at_least(1)),
    ),
    forward_target(
        "DropBlock2d", lambda: (dnn.DropBlock2d(0.3, 3), torch.randn(2, 3, 6, 6)), floating((4,))
    ),  # fmt: skip
    forward_target(
        "Cutout",
        lambda: (dnn.Cutout(3), torch.randn(2, 3, 8, 8)),
        exotic_then(
            lambda t: (
                TypeError
                if t.dtype == torch.bool or t.is_complex()
                else (OK if t.dim() in (3, 4) else ValueError)
            )
        ),
    ),  # fmt: skip
    forward_target(
        "DropConnectLinear",
        lambda: (dnn.DropConnectLinear(4, 2), torch.randn(3, 4)),
        exotic_then(lambda t: TypeError if not t.is_floating_point() else ANY),
        shape_check=lambda out, kw: None,
    ),  # fmt: skip
    forward_target(
        "DropConnectConv2d",
        lambda: (dnn.DropConnectConv2d(4, 2, 3), torch.randn(2, 4, 5, 5)),
        exotic_then(lambda t: TypeError if not t.is_floating_point() else ANY),
        shape_check=lambda out, kw: None,
    ),  # fmt: skip
    forward_target(
        "EmbeddingDropout",
        lambda: (dnn.EmbeddingDropout(5, 3), torch.tensor([[1, 2], [3, 0]])),
        exotic_then(
            lambda t: (
                TypeError
                if (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
                else ANY
            )
        ),
        shape_check=lambda out, kw: None,
    ),  # fmt: skip
    forward_target(
        "JoinDrop",
        lambda: (_Joined(), torch.randn(3, 2)),
        exotic_then(lambda t: TypeError if not t.is_floating_point() else ANY),
    ),
]


# -- the helpers of mc, constraints, convert and replace -----------------------------------------
def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), dnn.Dropout(0.5), torch.nn.Linear(8, 3))


def _classic_mlp():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), dnn.Dropout(0.5, mode="classic"),
                               torch.nn.Linear(8, 3))  # fmt: skip


def _batch_replicas(v):
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, str) and v == "auto"):
        return OK
    return ValueError if isinstance(v, str) else TypeError


def _max_norm_target(v):
    if isinstance(v, torch.nn.Module):
        return ANY  # a module without a Linear/Conv layer is a ValueError
    if not isinstance(v, torch.Tensor) or v.layout is not torch.strided or v.is_quantized:
        return TypeError
    if v.is_nested or not v.is_floating_point():
        return TypeError
    return OK if v.dim() >= 2 and v.device.type == "cpu" else ANY


def _schedule(**kw):
    layer = kw.pop("module")
    schedule = dnn.DropBlockSchedule(layer, **kw)
    schedule.step()
    return schedule.value


def _mc_input(t):
    if not isinstance(t, torch.Tensor):
        return TypeError
    if t.layout is not torch.strided or t.is_quantized or t.is_nested:
        return TypeError
    return ValueError if t.dim() == 0 else FOREIGN  # the model sees it


def _mc_predict(**kw):
    return mc.mc_predict(**kw)


def _stochastic(model):
    with mc.stochastic(model):
        return F.dropout(torch.ones(4), 0.5, False, seed=1)


HELPERS = [
    Target(
        "mc_predict",
        _mc_predict,
        lambda: {"model": _mlp(), "x": torch.randn(3, 4), "samples": 4},
        {
            "model": lambda v: FOREIGN if isinstance(v, torch.nn.Module) else TypeError,
            "x": _mc_input,
            "samples": integer(1, mc.MAX_SAMPLES, safe_max=64),
            "batch_replicas": _batch_replicas,
            "memory_budget": optional(integer(1)),
            "max_rows": integer(1),
            "seed": seed,
            "prefix": lambda v: (
                OK
                if v is None or v == "auto" or v is IDENTITY
                else (ValueError if isinstance(v, str) else (FOREIGN if callable(v) else TypeError))
            ),
        },
        ("x",),
        lambda out, kw: None,
    ),  # fmt: skip
    Target(
        "stochastic", _stochastic, lambda: {"model": _mlp()}, {"model": module_or(optional_=True)}
    ),
    Target(
        "batch_wide_modules",
        mc.batch_wide_modules,
        lambda: {"model": _mlp()},
        {"model": module_or()},
        check=lambda out, kw: None,
    ),
    Target(
        "max_norm_",
        constraints.max_norm_,
        lambda: {"target": _mlp(), "max_norm": 1.0},
        {
            "target": _max_norm_target,
            "max_norm": real(0.0, True, no_bool=True, tensors=False),
            "dim": optional(integer(-2, 1, tensors=False)),
            "include_bias": flag,
            "eps": real(0.0, no_bool=True, tensors=False),
        },
        check=lambda out, kw: None,
        aliases={"target": ("weight",)},
    ),  # fmt: skip
    Target(
        "MaxNorm",
        lambda **kw: constraints.MaxNorm(**kw)(_mlp()),
        lambda: {"max_norm": 1.0},
        {
            "max_norm": real(0.0, True, no_bool=True, tensors=False),
            "modules": lambda v: (
                OK
                if v is None
                else (
                    TypeError
                    if isinstance(v, (torch.nn.Module, torch.Tensor, str, bytes))
                    or not isinstance(v, Iterable)
                    else (ValueError if len(list(v)) == 0 else ANY)
                )
            ),
            "dim": optional(integer(-2, 1, tensors=False)),
            "include_bias": flag,
            "eps": real(0.0, no_bool=True, tensors=False),
        },
        check=lambda out, kw: None,
    ),  # fmt: skip
    Target(
        "convert",
        dropkit.convert,
        lambda: {"model": _classic_mlp()},
        {"model": module_or(), "to": choice("inverted", "classic"), "inplace": flag},
        check=lambda out, kw: None,
    ),  # fmt: skip
    Target(
        "replace_dropout",
        dropkit.replace_dropout,
        lambda: {"model": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))},
        {
            "model": module_or(),
            "to": choice("dropkit", "torch"),
            "mode": choice("inverted", "classic"),
            "inplace": flag,
        },
        check=lambda out, kw: None,
    ),  # fmt: skip
]
HELPERS.append(
    Target(
        "DropBlockSchedule",
        _schedule,
        lambda: {"module": dnn.DropBlock2d(0.1, 3), "start": 0.0, "stop": 0.2, "steps": 4},
        {
            "module": lambda v: TypeError if not isinstance(v, torch.nn.Module) else ANY,
            "start": prob(),
            "stop": prob(),
            "steps": integer(1),
            "attribute": lambda v: (
                OK if v == "p" else (TypeError if not isinstance(v, str) else ValueError)
            ),
        },
        check=lambda out, kw: float_in(out, 0.0, 1.0),
        aliases={"attribute": ("attribute", "has no attribute")},
    )  # fmt: skip
)


def _attach(**kw):
    model = _mlp()
    optimizer = kw.pop("optimizer", torch.optim.SGD(model.parameters(), 0.1))
    handle = kw.pop("policy", constraints.MaxNorm(1.0)).attach(optimizer, **kw)
    optimizer.step()
    handle.remove()


def _fractal_attach(model):
    policy = dnn.FractalDropPath(2)
    handle = policy.attach(model)
    model(torch.randn(3, 4))
    handle.remove()


HELPERS += [
    Target(
        "MaxNorm.attach",
        _attach,
        lambda: {"model": _mlp()},
        {
            "optimizer": lambda v: OK if isinstance(v, torch.optim.Optimizer) else TypeError,
            "model": optional(module_or()),
        },
        check=lambda out, kw: None,
    ),
    Target(
        "FractalDropPath.attach",
        _fractal_attach,
        lambda: {"model": _mlp()},
        {"model": lambda v: FOREIGN if isinstance(v, torch.nn.Module) else TypeError},
        check=lambda out, kw: None,
    ),
]
TARGETS = {t.name: t for t in FUNCTIONALS + MODULES + FORWARDS + HELPERS}


# -- running one call -----------------------------------------------------------------------------
def _on_alarm(signum, frame):
    raise Hang(f"the call ran longer than {CALL_LIMIT_S} s")


def run(target: Target, kwargs: dict):
    """``target.call(**kwargs)`` under an alarm: ("ok", result) or ("error", exception)."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "ok", target.call(**kwargs)
    except Hang:
        raise
    except Exception as error:  # judged by the caller
        return "error", error
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _names(target: Target, arg: str) -> list[str]:
    return [arg, *target.aliases.get(arg, ())]


def assert_clear(target: Target, arg: str, value, error: BaseException, expected) -> None:
    """The error is of the expected type, names the argument and comes from dropkit's code."""
    where = f"{target.name}({arg}={value!r:.80})"
    assert isinstance(error, (TypeError, ValueError, RuntimeError)), (
        f"{where} raised {type(error).__name__}: {error}"
    )
    if expected not in (ANY, OK):
        assert isinstance(error, expected), (
            f"{where} raised {type(error).__name__} ({error}), expected {expected}"
        )
    message = str(error)
    named = any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", message, re.I)
                for n in _names(target, arg))  # fmt: skip
    assert named, f"{where}: the message does not name {arg!r}: {type(error).__name__}: {message}"
    assert "Internal error" not in message, f"{where}: {message}"
    last = traceback.extract_tb(error.__traceback__)[-1]
    assert Path(last.filename).resolve().as_posix().startswith(DROPKIT_SRC) or message.startswith(
        arg
    ), f"{where}: raised from {last.filename}:{last.lineno}, not dropkit's code: {message}"


def judge(target: Target, arg: str, value, expected) -> None:
    kwargs = target.base()
    kwargs[arg] = value
    status, result = run(target, kwargs)
    where = f"{target.name}({arg}={value!r:.80})"
    if status == "ok":
        assert expected in (OK, ANY, FOREIGN), (
            f"{where} accepted a value that should raise {expected}"
        )
        if target.check is not None:
            target.check(result, kwargs)
        return
    if expected == OK:
        raise AssertionError(f"{where} refused a valid value") from result
    if expected == FOREIGN:
        return
    assert_clear(target, arg, value, result, expected)


@st.composite
def cases(draw, target: Target):
    arg = draw(st.sampled_from(sorted(target.kinds)))
    if arg in target.tensors and draw(st.booleans()):
        transform = draw(st.sampled_from(sorted(TRANSFORMS)))
        base = target.base()[arg]
        value = TRANSFORMS[transform](base)
    else:
        value = draw(VALUES)
    return arg, value


# The fast lane runs a fixed sample; DROPKIT_PROPERTY_EXAMPLES=N explores N random ones per target.
_EXPLORE = int(os.environ.get("DROPKIT_PROPERTY_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=_EXPLORE or 25,
    deadline=datetime.timedelta(seconds=5),
    suppress_health_check=list(HealthCheck),
    derandomize=not _EXPLORE,
    database=None,
)


@pytest.mark.parametrize("name", sorted(TARGETS))
@SETTINGS
@given(data=st.data())
def test_bad_and_edge_arguments(name, data):
    target = TARGETS[name]
    arg, value = data.draw(cases(target))
    expected = target.kinds[arg](value)
    assume(expected != "skip")
    judge(target, arg, value, expected)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_argument_every_transform(name):
    """Each tensor argument under every transform, and each argument under a fixed set of odd
    values: the deterministic floor under the generated examples."""
    target = TARGETS[name]
    for arg in sorted(target.kinds):
        values = []
        if arg in target.tensors:
            base = target.base()[arg]
            values += [make(base) for make in TRANSFORMS.values()]
        values += [None, "a", [], 1.5, -1, 2**64, math.nan, True, np.bool_(True),
                   torch.tensor([1, 2])]  # fmt: skip
        for value in values:
            expected = target.kinds[arg](value)
            if expected != "skip":
                judge(target, arg, value, expected)


def test_every_public_name_has_a_target():
    covered = {t.name.split("(")[0].split(".")[0] for t in TARGETS.values()}
    public = set(F.__all__) | set(dnn.__all__) | set(mc.__all__) | set(constraints.__all__)
    public |= {"convert", "replace_dropout"}
    exempt = {"MCPrediction", "LinearSchedule"}  # a result record; DropBlockSchedule's old name
    assert public - exempt <= covered, sorted(public - exempt - covered)
    modules = {n for n in dnn.__all__ if isinstance(getattr(dnn, n), type)}
    forwards = {t.name.split(".")[0] for t in FORWARDS}
    no_forward = {"FractalDropPath", "LinearSchedule"}  # a policy without forward; an alias
    assert modules - no_forward <= forwards, sorted(modules - no_forward - forwards)


# -- the audit's cases (issue 17), one by one ------------------------------------------------------
FUNCTIONAL_CALLS = {
    name: (TARGETS[name].call, TARGETS[name].base)
    for name in F.__all__
    if name in TARGETS and "training" in TARGETS[name].kinds
}


def test_the_training_cases_cover_every_functional_with_a_training_argument():
    import inspect

    takes = {n for n in F.__all__ if "training" in inspect.signature(getattr(F, n)).parameters}
    assert takes == set(FUNCTIONAL_CALLS)


@pytest.mark.parametrize("value", ["no", 2, [], None, 1.0, np.bool_(True), torch.tensor(True)])
@pytest.mark.parametrize("name", sorted(FUNCTIONAL_CALLS))
def test_training_must_be_a_bool_as_torch(name, value):
    """torch 2.13: ``F.dropout(x, 0.5, training='no')`` is a TypeError "dropout(): argument 'train'
    (position 3) must be bool, not str"; so are ints, None, NumPy bools and tensors."""
    with pytest.raises(TypeError):
        torch.nn.functional.dropout(torch.ones(3), 0.5, training=value)
    call, base = FUNCTIONAL_CALLS[name]
    kwargs = base()
    kwargs["training"] = value
    with pytest.raises(TypeError, match=r"argument 'training' must be bool, not"):
        call(**kwargs)


@pytest.mark.parametrize("value", ["no", 2, [], None])
@pytest.mark.parametrize(
    "call",
    [
        lambda v: F.dropout(torch.ones(3), 0.5, True, v),
        lambda v: F.alpha_dropout(torch.ones(3), 0.5, True, v),
        lambda v: F.gaussian_dropout(torch.ones(3), 0.5, True, v),
        lambda v: F.drop_block2d(torch.ones(1, 1, 4, 4), 0.5, 3, v),
        lambda v: F.locked_dropout(torch.ones(2, 2, 2), 0.5, inplace=v),
        lambda v: dnn.Dropout(0.5, v),
        lambda v: dnn.AlphaDropout(0.5, v),
        lambda v: dnn.GaussianDropout(0.5, v),
        lambda v: dnn.DropBlock2d(0.5, 3, v),
    ],
)
def test_inplace_must_be_a_bool_stricter_than_torch(call, value):
    """torch reads ``inplace=`` by its truth value (``F.dropout(x, inplace='no')`` writes in
    place); dropkit refuses anything but a bool."""
    torch.nn.functional.dropout(torch.ones(3), 0.5, True, value)  # torch accepts it
    with pytest.raises(TypeError, match="inplace must be a bool"):
        call(value)


def test_linear_decay_rates_with_a_huge_count_raises_at_once():
    with pytest.raises(ValueError, match=r"num_layers must be an integer >= 1 and <= 1048576"):
        F.linear_decay_rates(0.5, 2**62)
    assert len(F.linear_decay_rates(0.5, MAX_LAYERS)) == MAX_LAYERS


@pytest.mark.parametrize("mode", [None, "", "rows", 1, ["row"]])
def test_stochastic_depth_mode_validated_as_torchvision(mode):
    x = torch.randn(4, 3)
    for call in (lambda: F.stochastic_depth(x, 0.5, mode),
                 lambda: F.stochastic_depth(x, 0.5, mode, training=False),
                 lambda: dnn.StochasticDepth(0.5, mode)):  # fmt: skip
        with pytest.raises(ValueError, match="mode has to be either 'batch' or 'row'"):
            call()


@pytest.mark.parametrize(
    "p, error", [(-0.1, ValueError), (math.nan, RuntimeError), (1.5, ValueError), ("a", TypeError)]
)
def test_drop_block_gamma_refuses_bad_p(p, error):
    with pytest.raises(error, match="p"):
        F.drop_block_gamma(p, 3, (7, 7))


@pytest.mark.parametrize(
    "block_size, spatial, error",
    [(1.5, (7, 7), TypeError), (0, (7, 7), ValueError), (3, (0, 7), ValueError),
     (3, "77", TypeError), (3, (), ValueError), ([3, 3, 3], (7, 7), ValueError),
     (3, (7.0, 7), TypeError)],
)  # fmt: skip
def test_drop_block_gamma_refuses_bad_sizes(block_size, spatial, error):
    with pytest.raises(error, match="block_size|spatial"):
        F.drop_block_gamma(0.5, block_size, spatial)


def test_drop_block_gamma_of_valid_arguments():
    assert F.drop_block_gamma(0.5, 3, (7, 7)) == pytest.approx(0.5 * 49 / (9 * 25))
    assert F.drop_block_gamma(0.0, [1, 2], (4, 5)) == 0.0
    assert 0.0 <= F.drop_block_gamma(1.0, 7, (7, 7)) <= 1.0


def test_cutout_size_zero_and_huge_counts_are_clear_errors():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        F.cutout(x, 0)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        dnn.Cutout(0)
    with pytest.raises(
        ValueError,
        match=r"n_holes must be an integer >= 0 and <= 4096, got 2\*\*62|"
        r"n_holes must be an integer >= 0 and <= 4096, got 4611",
    ):
        F.cutout(x, 3, n_holes=2**62)  # was: "use an offset <= -27670116110564327425"
    with pytest.raises(ValueError, match="fill=300.0 must be an integer in \\[0, 255\\]"):
        F.cutout(torch.zeros(1, 4, 4, dtype=torch.uint8), 2, fill=300)


@pytest.mark.parametrize(
    "columns, error",
    [([1.5], TypeError), ([0, 0], ValueError), ([], ValueError), ([2], ValueError),
     ("01", TypeError), (3, TypeError), ([True], TypeError)],
)  # fmt: skip
def test_join_drop_columns(columns, error):
    with pytest.raises(error, match="columns"):
        dnn.JoinDrop(dnn.FractalDropPath(2), columns)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"stride": 1.5}, TypeError, "stride must be an integer or a pair"),
     ({"stride": (1, 2, 3)}, ValueError, "stride must be an integer or a pair"),
     ({"stride": 0}, ValueError, "stride must be integers in"),
     ({"padding": -1}, ValueError, "padding must be integers in"),
     ({"padding": "full"}, ValueError, "padding must be one of"),
     ({"dilation": [1.0, 1]}, TypeError, "dilation must be an integer or a pair"),
     ({"groups": 2}, ValueError, "groups"),
     ({"groups": 1.0}, TypeError, "groups must be an integer")],
)  # fmt: skip
def test_drop_connect_conv2d_arguments(kwargs, error, match):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3)
    for training in (True, False):
        with pytest.raises(error, match=match):
            F.drop_connect_conv2d(x, w, training=training, **kwargs)
    if "groups" not in kwargs or kwargs["groups"] != 2:  # a module may have 2 groups
        with pytest.raises(error, match=match):
            dnn.DropConnectConv2d(2, 2, 3, **kwargs)


SPARSE_CALLS = {
    "dropout": lambda t: F.dropout(t, 0.5),
    "dropout2d": lambda t: F.dropout2d(t, 0.5),
    "alpha_dropout": lambda t: F.alpha_dropout(t, 0.5, True),
    "gaussian_dropout": lambda t: F.gaussian_dropout(t, 0.5),
    "drop_path": lambda t: F.drop_path(t, 0.5, True),
    "stochastic_depth": lambda t: F.stochastic_depth(t, 0.5, "row"),
    "drop_block2d": lambda t: F.drop_block2d(t, 0.5, 3),
    "cutout": lambda t: F.cutout(t, 2),
    "drop_connect_linear": lambda t: F.drop_connect_linear(t, torch.randn(2, 6)),
    "broadcast_dropout": lambda t: F.broadcast_dropout(t, 0.5, noise_shape=(None,) * t.dim()),
    "Dropout.eval": lambda t: dnn.Dropout(0.5).eval()(t),
}


@pytest.mark.parametrize("kind", ["sparse_coo", "quantized", "nested"])
@pytest.mark.parametrize("name", sorted(SPARSE_CALLS))
def test_sparse_quantized_and_nested_inputs_refused_up_front(name, kind):
    """Sparse COO inputs used to fail deep inside torch (or, in evaluation, pass through)."""
    x = TRANSFORMS[kind](torch.randn(2, 3, 6, 6))
    with pytest.raises(TypeError, match=r"argument '(input|x)' \(position 1\) must be a dense"):
        SPARSE_CALLS[name](x)


class _MetaGenerator(torch.Generator):
    """torch 2.13 cannot make a meta generator (``torch.Generator("meta")`` raises "META device
    type not an accelerator" in the caller's own line); this one says it is one."""

    @property
    def device(self):
        return torch.device("meta")


@pytest.mark.parametrize(
    "call",
    [lambda g: F.dropout(torch.ones(3), 0.5, generator=g),
     lambda g: F.dropout(torch.ones(3), 0.5, False, generator=g),
     lambda g: dnn.Dropout(0.5, generator=g)],
)  # fmt: skip
def test_a_generator_not_on_the_cpu_is_refused_clearly(call):
    with pytest.raises(ValueError, match="generator must be a CPU torch.Generator"):
        call(_MetaGenerator())
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
        call("cpu")


def test_stream_arguments_checked_in_evaluation_too():
    x = torch.ones(3)
    with pytest.raises(TypeError, match="seed must be an integer"):
        F.dropout(x, 0.5, False, seed="abc")
    with pytest.raises(ValueError, match="offset must be an integer in"):
        F.dropout(x, 0.5, False, offset=-1)
    with pytest.raises(ValueError, match="either seed or generator"):
        F.gaussian_dropout(x, 0.5, False, seed=1, generator=torch.Generator())


def test_no_negative_offset_advice():
    from dropkit.ops.checks import check_stream_end

    with pytest.raises(ValueError) as error:
        check_stream_end(0, 2**64)
    assert "<= -" not in str(error.value) and "too large" in str(error.value)


@pytest.mark.parametrize(
    "call, error, match",
    [(lambda: F.embedding_dropout(torch.tensor([7]), torch.randn(5, 2)), ValueError,
      r"input ids must lie in \[0, 4\]"),
     (lambda: F.embedding_dropout(torch.tensor([1]), torch.randn(5, 2), padding_idx=5),
      ValueError, "padding_idx must be an integer >= -5 and <= 4"),
     (lambda: dnn.EmbeddingDropout(5, 2, padding_idx=9), ValueError, "padding_idx"),
     (lambda: F.embedding_dropout(torch.tensor([1]), torch.randn(5, 2), norm_type=math.nan),
      ValueError, "norm_type must be a finite number"),
     (lambda: F.embedding_dropout(torch.tensor([1]), torch.randn(5, 2), sparse=1), TypeError,
      "sparse must be a bool")],
)  # fmt: skip
def test_embedding_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "name", sorted(t.name for t in MODULES if t.name not in ("FractalDropPath()", "JoinDrop()"))
)
def test_a_module_with_a_non_bool_training_flag(name):
    """``module.train("no")`` is torch's ValueError; a ``training`` attribute set by hand to a
    non-bool reaches the functional, which refuses it as torch's functionals do."""
    target = TARGETS[name]
    TRAINING_VALUE[0] = "no"
    try:
        with pytest.raises(TypeError, match="argument 'training' must be bool"):
            target.call(**target.base())
    finally:
        TRAINING_VALUE[0] = None
