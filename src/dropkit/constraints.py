"""Max-norm weight constraints (Hinton et al. 2012; Srivastava et al. 2014, appendix A)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

__all__ = ["MaxNorm", "max_norm_"]

_CONSTRAINED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)


def _check_bound(max_norm: float, eps: float) -> None:
    for name, value, allowed in (("max_norm", max_norm, "> 0"), ("eps", eps, ">= 0")):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{name} must be a finite number {allowed}, got {type(value).__name__} {value!r}"
            )
        if not math.isfinite(value) or not (value > 0 if name == "max_norm" else value >= 0):
            raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")


def _check_dim(dim: int | None, include_bias: bool) -> None:
    if dim is not None and (
        isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral)
    ):
        raise TypeError(f"dim must be an int or None, got {type(dim).__name__} {dim!r}")
    if type(include_bias) is not bool and not isinstance(include_bias, np.bool_):
        raise TypeError(
            f"include_bias must be a bool, got {type(include_bias).__name__} {include_bias!r}"
        )
    if include_bias and dim != 0:
        raise ValueError("include_bias needs dim=0 (the bias has one entry per unit of dim 0)")


@torch.no_grad()
def max_norm_(
    target: nn.Module | torch.Tensor,
    max_norm: float,
    *,
    dim: int | None = 0,
    include_bias: bool = False,
    eps: float = 1e-7,
) -> None:
    r"""Renormalise, in place, each unit's incoming weight vector to L2 norm at most ``max_norm``.

    Hinton et al. 2012, "Improving neural networks by preventing co-adaptation of feature
    detectors"; Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 15, appendix A. For unit ``j`` with incoming weights :math:`w_j`:

    .. math:: w_j \leftarrow w_j \cdot \frac{c}{\lVert w_j \rVert_2 + \epsilon}
              \quad\text{if } \lVert w_j \rVert_2 > c, \qquad w_j \text{ unchanged otherwise.}

    Vectors already inside the ball are left unchanged bit for bit (Keras instead multiplies
    every vector by ``norm / (norm + eps)``).

    ``dim`` is the *unit* dimension, as in ``torch.nn.utils.weight_norm`` and ``torch.renorm``:
    the norm runs over all the other dimensions. The default ``dim=0`` is right for torch's
    layouts: a Linear weight ``(out, in)`` is normed over dim 1 (its rows) and a Conv weight
    ``(out, in/groups, *kernel)`` over all dims but 0. Keras' ``MaxNorm(axis=0)`` names the axis
    *summed over* on Keras' transposed ``(in, out)`` kernels; it is the same constraint as
    dropkit's ``dim=0`` on torch's weights, and ``axis=0`` applied naively to a torch weight would
    constrain columns instead. ``dim=None`` treats the whole tensor as one vector.

    With ``include_bias`` the bias counts as one more incoming weight: the norm of
    ``[w_j, b_j]`` is constrained and both are rescaled by the same factor.

    Args:
        target: a weight tensor, or a module: every ``Linear``, ``Bilinear`` and
            ``Conv1d/2d/3d`` inside it (their subclasses included, e.g. ``DropConnectLinear``).
            Transposed convolutions (whose units are on dim 1) are not touched.
        max_norm: the bound ``c > 0``. Srivastava et al. used ``c`` in [3, 4].
        dim: the unit dimension (default 0), or None for the whole tensor.
        include_bias: constrain ``[w_j, b_j]`` (modules only, ``dim=0``).
        eps: added to the norm in the rescaling factor (>= 0), as Keras does.
    """
    _check_bound(max_norm, eps)
    _check_dim(dim, include_bias)
    if isinstance(target, torch.Tensor):
        if target.layout is not torch.strided or target.is_quantized or target.is_nested:
            raise TypeError(f"target must be a dense tensor, got a {target.layout} tensor")
        if not target.dtype.is_floating_point:
            raise TypeError(f"target must be a floating weight tensor, got {target.dtype}")
        if include_bias:
            raise ValueError("include_bias needs a module (a bare tensor has no bias)")
        _renorm(target, None, float(max_norm), float(eps), dim)
        return
    if not isinstance(target, nn.Module):
        raise TypeError(f"target must be a tensor or an nn.Module, got {type(target).__name__}")
    modules = [m for m in target.modules() if isinstance(m, _CONSTRAINED)]
    if not modules:
        raise ValueError(f"{type(target).__name__} contains no Linear or Conv layer to constrain")
    for module in modules:
        bias = module.bias if include_bias else None
        _renorm(module.weight, bias, float(max_norm), float(eps), dim)


def _renorm(weight, bias, max_norm: float, eps: float, dim: int | None) -> None:
    if dim is None:
        units = weight.reshape(1, -1)
    else:
        if weight.dim() < 2:
            raise ValueError(f"weight must have a unit dimension and inputs (>= 2 dims), "
                             f"got {weight.dim()}")  # fmt: skip
        if not -weight.dim() <= dim < weight.dim():
            raise ValueError(f"dim must be in [{-weight.dim()}, {weight.dim()}), got {dim}")
        units = weight.movedim(dim, 0)
    # Half-precision sums of squares overflow easily; accumulate in float32 at least.
    acc = torch.promote_types(weight.dtype, torch.float32)
    squared = units.reshape(units.shape[0], -1).to(acc).pow(2).sum(1)
    if bias is not None:
        squared = squared + bias.to(acc).pow(2)
    norms = squared.sqrt()
    too_long = norms > max_norm
    if not bool(too_long.any()):
        return
    factor = (max_norm / (norms[too_long] + eps)).to(weight.dtype)
    if dim is None:
        weight.mul_(factor[0])
        return
    # Only the units outside the ball are written; the others keep their exact bits.
    units[too_long] = units[too_long] * factor.reshape(-1, *([1] * (units.dim() - 1)))
    if bias is not None:
        bias[too_long] = bias[too_long] * factor.to(bias.dtype)


class MaxNorm:
    """A max-norm constraint (:func:`max_norm_`) applied after every optimiser step or on demand.

    >>> constraint = MaxNorm(3.0)
    >>> handle = constraint.attach(optimizer, model)  # renormalise after each optimizer.step()
    >>> handle.remove()
    >>> constraint(model)                              # or apply it by hand

    Args:
        max_norm: the bound ``c > 0`` on each unit's incoming weight norm. Srivastava et al. 2014
            used ``c`` between 3 and 4; Hinton et al. 2012 capped the squared length at 15.
        modules: the layers to constrain; when given, they are constrained whatever model is
            passed to :meth:`__call__` / :meth:`attach`. Default: every Linear/Conv of that model.
        dim: the unit dimension (see :func:`max_norm_`; 0 for torch's Linear and Conv weights).
        include_bias: constrain ``[w_j, b_j]`` rather than ``w_j``.
        eps: added to the norm in the rescaling factor.
    """

    def __init__(
        self,
        max_norm: float,
        modules: Iterable[nn.Module] | None = None,
        *,
        dim: int | None = 0,
        include_bias: bool = False,
        eps: float = 1e-7,
    ) -> None:
        _check_bound(max_norm, eps)
        _check_dim(dim, include_bias)
        self.max_norm = float(max_norm)
        if modules is not None and (
            isinstance(modules, (nn.Module, torch.Tensor, str)) or not isinstance(modules, Iterable)
        ):
            raise TypeError(
                f"modules must be an iterable of nn.Modules or None, got {type(modules).__name__}"
            )
        self.modules = None if modules is None else list(modules)
        if self.modules == []:
            raise ValueError(
                "modules must hold at least one nn.Module (or be None: every Linear/Conv layer of "
                "the model), got an empty collection"
            )
        if self.modules is not None:
            for module in self.modules:
                if not isinstance(module, nn.Module):
                    raise TypeError(f"modules must hold nn.Modules, got {type(module).__name__}")
        self.dim = None if dim is None else int(dim)
        self.include_bias = bool(include_bias)
        self.eps = float(eps)

    def __call__(self, model: nn.Module | None = None) -> None:
        """Constrain ``modules=`` (if given) or every Linear/Conv layer of ``model``, in place."""
        targets = self.modules if self.modules is not None else [model]
        if targets == [None]:
            raise ValueError("MaxNorm needs a model, or modules= at construction")
        for module in targets:
            max_norm_(module, self.max_norm, dim=self.dim, include_bias=self.include_bias,
                      eps=self.eps)  # fmt: skip

    apply = __call__

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module | None = None):
        """Renormalise after every ``optimizer.step()`` (``register_step_post_hook``); returns
        the hook's handle (call ``.remove()`` to detach).

        Constrains ``modules=`` or the Linear/Conv layers of ``model``. With neither, every
        parameter of the optimiser with 2 or more dimensions is treated as a weight whose units
        lie along ``dim`` (biases and norm scales are left alone; note that this includes
        embedding tables, whose rows would be constrained too: pass ``model`` to avoid that)."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")  # fmt: skip
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
        if self.modules is None and model is None:
            if self.include_bias:
                raise ValueError(
                    "include_bias needs modules= or a model to pair weights with biases"
                )

            def hook(opt, args, kwargs):
                for group in opt.param_groups:
                    for param in group["params"]:
                        if param.dim() >= 2:
                            max_norm_(param, self.max_norm, dim=self.dim, eps=self.eps)
        else:

            def hook(opt, args, kwargs):
                self(model)

        return optimizer.register_step_post_hook(hook)

    def __repr__(self) -> str:
        extra = "" if self.dim == 0 else f", dim={self.dim}"
        return f"MaxNorm(max_norm={self.max_norm}{extra}, include_bias={self.include_bias})"
