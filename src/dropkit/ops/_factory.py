"""The factory: from a method's declaration, one custom op, its fake, its autograd rule (only the
seed and the tensors the rule names are saved) and the cheap eager route.

:class:`StreamOp` takes a schema, a forward (called with the seed as a Python int), a backward
rule and a fake. It registers ``dropkit::<name>`` with ``torch.library.custom_op`` and builds a
``torch.autograd.Function`` running the same forward and backward. Calling the ``StreamOp`` picks
the route:

- *eager* (plain CPU/CUDA tensors, nothing tracing, faking or transforming): the forward directly
  when no gradient is needed, else the ``autograd.Function`` — this avoids the custom op's Python
  dispatch (about 70 us per forward+backward, more than the kernel of a 100x800 activation);
- *op* (``torch.compile``, ``torch.export``, ``make_fx``, ``torch.jit.trace``, fake or meta
  tensors, functorch transforms, tensor subclasses and modes): ``torch.ops.dropkit.<name>``, the
  seed a 0-d int64 tensor, so nothing calls ``int(seed)`` on a traced path.

Both routes give bit-identical results. The backward rule receives the seed as the route gives it
(an int or a tensor) and calls other :class:`StreamOp` s with it, so it is written once.

:class:`MaskOp` is the common case: ``y = x * M`` (or ``x * M + B``, or ``where(M, x, B)``) with
``M`` and ``B`` functions of the seed and the shape only. Its gradient is ``grad * M``, computed by
the same op with ``affine=False``, so its backward (and every higher derivative) saves nothing
but the seed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch.overrides import handle_torch_function, has_torch_function

from dropkit.ops._route import plain_eager
from dropkit.ops._stream import seed_tensor

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
        native: optional ``native(*args)`` (seed an int) for the eager route with gradients: the
            forward as one op whose autograd rule a backend implements natively (the C++ backend's
            node runs no Python in backward), or ``NotImplemented`` where it does not apply. It
            must give the values and gradients of ``forward`` and ``backward``.
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
        native: Callable | None = None,
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
        self._forward = forward
        self._backward = backward
        self._native = native

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
        self._function = type(name, (torch.autograd.Function,), {
            "forward": staticmethod(self._fn_forward),
            "backward": staticmethod(self._fn_backward),
        })  # fmt: skip

    # -- the autograd rule, shared by both routes -------------------------------------------------
    def _saved(self, args, tensors, needs_input_grad) -> SimpleNamespace:
        values = dict(zip(self.arg_names, args))
        for index, tensor in zip(self._save_idx, tensors):
            values[self.arg_names[index]] = tensor
        return SimpleNamespace(needs_input_grad=needs_input_grad, **values)

    def _stripped(self, args) -> list:
        """``args`` without tensors (but the seed): those travel through save_for_backward."""
        return [None if i in self._tensors else a for i, a in enumerate(args)]

    def _setup(self, ctx, inputs, output) -> None:
        ctx.save_for_backward(*(inputs[i] for i in self._save_idx), inputs[self._seed])
        ctx.args = self._stripped(inputs)

    def _op_backward(self, ctx, *grads):
        *tensors, seed = ctx.saved_tensors
        args = list(ctx.args)
        args[self._seed] = seed
        return tuple(self._backward(self._saved(args, tensors, ctx.needs_input_grad), *grads))

    def _fn_forward(self, ctx, *args):
        ctx.save_for_backward(*(args[i] for i in self._save_idx))
        ctx.args = self._stripped(args)
        return self._forward(*args)

    def _fn_backward(self, ctx, *grads):
        if self._backward is None:
            raise RuntimeError(f"dropkit::{self.name} has no gradient")
        saved = self._saved(ctx.args, ctx.saved_tensors, ctx.needs_input_grad)
        return tuple(self._backward(saved, *grads))

    # -- the two routes ---------------------------------------------------------------------------
    def __call__(self, *args):
        tensors = [args[i] for i in self._tensors if args[i] is not None]
        seed = args[self._seed]
        if plain_eager(tensors):
            if isinstance(seed, torch.Tensor):
                args = list(args)
                args[self._seed] = int(seed)
            if (self._backward is not None and torch.is_grad_enabled()
                    and any(t.requires_grad for t in tensors)):  # fmt: skip
                if self._native is not None:
                    result = self._native(*args)
                    if result is not NotImplemented:
                        return result
                return self._function.apply(*args)
            return self._forward(*args)
        if not isinstance(seed, torch.Tensor):
            args = list(args)
            args[self._seed] = seed_tensor(seed)
        return self.op(*args)


class MaskOp(StreamOp):
    """A mask method: ``dropkit::<name>(Tensor x, Tensor seed, int offset, bool affine, <params>)``.

    ``multiplier(x, seed, offset, *params) -> (M, B)``: ``M`` broadcastable to ``x`` in the
    accumulation dtype (or bool with ``select``), ``B`` the shift (``None`` for a linear method),
    both functions of the seed, the offset, the parameters and ``x``'s shape, dtype and device
    only; the mask indexes the *logical* (row-major) elements. The forward returns, in ``x``'s
    layout (``torch.empty_like``), ``x * M`` (``affine=False`` or no shift), ``x * M + B``, or with
    ``select`` ``where(M, x, B)`` (``where(M, x, 0)`` without ``affine``), formed in the
    accumulation dtype and rounded once. The gradient is the op with ``affine=False``.

    ``fused(x, seed, offset, affine, *params, out=None)``: optional one-pass route for a contiguous
    ``x``; returns ``NotImplemented`` where it does not apply. ``native(x, seed, offset, affine,
    *params)``: see :class:`StreamOp`.
    """

    def __init__(self, name: str, params: str, multiplier: Callable, *,
                 fused: Callable | None = None, select: bool = False,
                 native: Callable | None = None) -> None:  # fmt: skip
        self._multiplier = multiplier
        self._fused = fused
        self._select = select
        tensor_params = tuple(m.group(2) for m in map(_ARG.fullmatch, params.split(","))
                              if m and m.group(1).startswith("Tensor"))  # fmt: skip
        super().__init__(
            name, f"Tensor x, Tensor seed, int offset, bool affine, {params}", self.apply,
            backward=self._grad, saves=tensor_params, native=native,
        )  # fmt: skip

    def apply(self, x, seed: int, offset: int, affine: bool, *params, out=None):
        """The forward on a seed given as an int (either route's body); ``out`` may be ``x``."""
        if self._fused is not None and x.is_contiguous() and (out is None or out.is_contiguous()):
            result = self._fused(x, seed, offset, affine, *params, out=out)
            if result is not NotImplemented:
                return result
        mult, shift = self._multiplier(x, seed, offset, *params)
        out = torch.empty_like(x) if out is None else out
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
        params = [getattr(saved, n) for n in self.arg_names[4:]]
        grad_x = self(grad, saved.seed, saved.offset, False, *params)
        return (grad_x,) + (None,) * (len(self.arg_names) - 1)

    def inplace(self, x: torch.Tensor, seed, offset: int, *params) -> torch.Tensor:
        """``x`` overwritten with the op's affine forward: in one pass in plain eager mode without
        autograd, else through the out-of-place op and ``copy_`` (which autograd records)."""
        if plain_eager([x]) and not (torch.is_grad_enabled() and x.requires_grad):
            seed = int(seed) if isinstance(seed, torch.Tensor) else seed
            self.apply(x, seed, offset, True, *params, out=x)
            return x
        return x.copy_(self(x, seed, offset, True, *params))


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
