"""The factory for dropkit's methods written in plain torch: from a method's declaration, one
custom operator ``dropkit::<name>`` with its fake and its autograd rule (only the seed, the
scalars and the tensors the rule names are saved).

:class:`StreamOp` takes a schema, a forward (called with the seed as a Python int), a backward
rule and a fake, and registers the operator with ``torch.library.custom_op``. Calling a
``StreamOp`` calls that operator: one route, eager or traced (``torch.compile``, ``torch.export``,
fake and meta tensors, functorch transforms, tensor subclasses and modes all see the same op). The
seed is a 0-d int64 CPU tensor (see :func:`dropkit.ops.resolve_stream`), so nothing traced reads its
value. The backward rule receives the seed as that tensor and may call other operators with it.

:class:`MaskOp` is the common case: ``y = x * M`` (or ``x * M + B``, or ``where(M, x, B)``) with
``M`` and ``B`` functions of the seed and the shape only. Its gradient is ``grad * M``, computed by
the same op with ``affine=False``, so its backward (and every higher derivative) saves nothing
but the seed. The hot methods (dropout and everything that is a keep mask, alpha dropout,
bias-dropout-add) are not made here: they are the compiled primitives of :mod:`dropkit.kernels`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch.overrides import handle_torch_function, has_torch_function

__all__ = ["MaskOp", "StreamOp", "overridable"]

_ARG = re.compile(r"\s*(Tensor\??|int\[\]|float\[\]|SymInt\[\]|int|float|bool|str)\s+(\w+)")


class StreamOp:
    """One stream op from its declaration.

    Args:
        name: the op is ``dropkit::<name>``.
        schema: the arguments, e.g. ``"Tensor x, Tensor seed, int offset, float scale"``; one
            ``Tensor seed`` is required.
        returns: the schema's return, ``"Tensor"`` by default.
        forward: ``forward(*args)`` with ``seed`` a Python int.
        backward: ``backward(saved, *grads) -> grads`` (one per argument, ``None`` for those
            without), where ``saved`` has the arguments as attributes (the tensors in ``saves``
            restored, the others ``None``; ``seed`` an int or a tensor) and ``needs_input_grad``.
            Without it, the op has no gradient.
        fake: the fake (meta) implementation; default ``torch.empty_like(first argument)`` (the
            layout the real forward returns).
        saves: names of tensor arguments the backward needs.
    """

    def __init__(
        self,
        name: str,
        schema: str,
        forward: Callable,
        *,
        backward: Callable | None = None,
        fake: Callable | None = None,
        saves: tuple[str, ...] = (),
        returns: str = "Tensor",
    ) -> None:
        parsed = [_ARG.fullmatch(part) for part in schema.split(",")]
        if not all(parsed):
            raise ValueError(f"{name}: cannot read schema {schema!r}")
        self.name = name
        self.arg_names = [m.group(2) for m in parsed]
        self._seed = self.arg_names.index("seed")
        self._tensors = [i for i, m in enumerate(parsed) if m.group(1).startswith("Tensor")
                         and i != self._seed]  # fmt: skip
        self._save_idx = [self.arg_names.index(n) for n in saves]
        self._backward = backward

        def impl(*args):
            args = list(args)
            args[self._seed] = int(args[self._seed])
            return forward(*args)

        self.op_def = torch.library.custom_op(
            f"dropkit::{name}", impl, mutates_args=(), schema=f"({schema}) -> {returns}"
        )
        self.op_def.register_fake(fake or (lambda first, *rest: torch.empty_like(first)))
        if backward is not None:
            self.op_def.register_autograd(self._op_backward, setup_context=self._setup)
        self.op = getattr(torch.ops.dropkit, name).default

    # -- the autograd rule ------------------------------------------------------------------
    def _setup(self, ctx, inputs, output) -> None:
        ctx.save_for_backward(*(inputs[i] for i in self._save_idx))
        # Tensors travel through save_for_backward; the seed (0-d) and the scalars as they are.
        ctx.args = [None if i in self._tensors else a for i, a in enumerate(inputs)]

    def _op_backward(self, ctx, *grads):
        values = dict(zip(self.arg_names, ctx.args))
        for index, tensor in zip(self._save_idx, ctx.saved_tensors):
            values[self.arg_names[index]] = tensor
        saved = SimpleNamespace(needs_input_grad=ctx.needs_input_grad, **values)
        return tuple(self._backward(saved, *grads))

    def __call__(self, *args, **kwargs):
        return self.op(*args, **kwargs)


class MaskOp(StreamOp):
    """A mask method: ``dropkit::<name>(Tensor x, Tensor seed, int offset, bool affine, <params>)``.

    ``multiplier(x, seed, offset, *params) -> (M, B)``: ``M`` broadcastable to ``x`` in the
    accumulation dtype (or bool with ``select``), ``B`` the shift (``None`` for a linear method),
    both functions of the seed (an int), the offset, the parameters and ``x``'s shape, dtype and
    device only; the mask indexes the *logical* (row-major) elements. The forward returns, in
    ``x``'s layout (``torch.empty_like``), ``x * M`` (``affine=False`` or no shift), ``x * M + B``,
    or with ``select`` ``where(M, x, B)`` (``where(M, x, 0)`` without ``affine``), formed in the
    accumulation dtype and rounded once. The gradient is the op with ``affine=False``.
    """

    def __init__(self, name: str, params: str, multiplier: Callable, *,
                 select: bool = False) -> None:  # fmt: skip
        self._multiplier = multiplier
        self._select = select
        tensor_params = tuple(m.group(2) for m in map(_ARG.fullmatch, params.split(","))
                              if m and m.group(1).startswith("Tensor"))  # fmt: skip
        super().__init__(
            name, f"Tensor x, Tensor seed, int offset, bool affine, {params}", self.apply,
            backward=self._grad, saves=tensor_params,
        )  # fmt: skip

    def apply(self, x, seed: int, offset: int, affine: bool, *params):
        """The forward on a seed given as an int (the operator's body)."""
        mult, shift = self._multiplier(x, seed, offset, *params)
        out = torch.empty_like(x)
        if self._select:
            fill = shift if affine else torch.zeros((), dtype=x.dtype, device=x.device)
            return torch.where(mult, x, fill, out=out)
        if shift is None or not affine:
            # A mixed-dtype mul computes in the promoted (accumulation) dtype and rounds once into
            # ``out``: the reference's values, without a full-size temporary.
            return torch.mul(x, mult, out=out)
        if out.dtype == mult.dtype:
            return torch.mul(x, mult, out=out).add_(shift)
        return out.copy_((x.to(mult.dtype) * mult).add_(shift))

    def _grad(self, saved, grad):
        params = {n: getattr(saved, n) for n in self.arg_names[4:]}
        grad_x = self(grad, saved.seed, saved.offset, affine=False, **params)
        return (grad_x,) + (None,) * (len(self.arg_names) - 1)


def _relevant(args, kwargs) -> tuple:
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, (list, tuple)):
            found.extend(v for v in value if hasattr(type(v), "__torch_function__"))
        elif hasattr(type(value), "__torch_function__"):  # tensors, fx proxies, subclasses
            found.append(value)
    return tuple(found)


def overridable(fn: Callable | None = None, *, sequences: bool = False) -> Callable:
    """``fn`` made transparent to ``__torch_function__``, as torch's own functionals are: a
    ``torch.fx`` proxy (``symbolic_trace``), a tensor subclass or a torch-function mode among the
    tensor arguments receives the call of the public function. ``sequences``: ``fn`` takes lists
    of tensors, whose elements are looked at too (``has_torch_function`` alone does not look into
    a list)."""
    if fn is None:
        return functools.partial(overridable, sequences=sequences)

    @functools.wraps(fn)
    def public(*args, **kwargs):
        # has_torch_function (C) answers for plain tensors and numbers in well under a
        # microsecond, and is True under a torch-function mode; only then are the arguments
        # gathered one by one for the dispatch.
        if (
            sequences
            or has_torch_function(args)
            or (kwargs and has_torch_function(tuple(kwargs.values())))
        ):
            relevant = _relevant(args, kwargs)
            if relevant and has_torch_function(relevant):
                return handle_torch_function(public, relevant, *args, **kwargs)
        return fn(*args, **kwargs)

    return public
