"""Max-norm weight constraints (Hinton et al. 2012; Srivastava et al. 2014, appendix A)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["MaxNorm", "max_norm_"]

_CONSTRAINED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)


@torch.no_grad()
def max_norm_(
    target: nn.Module | torch.Tensor,
    max_norm: float,
    *,
    include_bias: bool = False,
    eps: float = 1e-7,
) -> None:
    r"""Renormalise, in place, each unit's incoming weight vector to L2 norm at most ``max_norm``.

    For unit (output channel) ``j`` with incoming weights :math:`w_j`:
    :math:`w_j \leftarrow w_j \cdot \min(1, c / (\lVert w_j \rVert + \epsilon))`. The unit is dim 0
    of torch's weight layouts: a Linear weight ``(out, in)`` is normed over dim 1 and a Conv weight
    ``(out, in/groups, *kernel)`` over all dims but 0. (Keras' ``MaxNorm(axis=0)`` means the same
    constraint on Keras' transposed ``(in, out)`` kernels.) Vectors already inside the ball are
    left unchanged bit for bit. With ``include_bias`` the bias counts as one more incoming weight:
    the norm of ``[w_j, b_j]`` is constrained and both are rescaled.

    Args:
        target: a weight tensor (dim 0 = units) or a module (Linear/Conv; for a container, every
            such submodule).
        max_norm: the bound ``c > 0``.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    if isinstance(target, torch.Tensor):
        _renorm(target, None, float(max_norm), eps)
        return
    if not isinstance(target, nn.Module):
        raise TypeError(f"target must be a tensor or an nn.Module, got {type(target).__name__}")
    modules = [m for m in target.modules() if isinstance(m, _CONSTRAINED)]
    if not modules:
        raise ValueError(f"{type(target).__name__} contains no Linear or Conv layer to constrain")
    for module in modules:
        bias = module.bias if include_bias else None
        _renorm(module.weight, bias, float(max_norm), eps)


def _renorm(weight: torch.Tensor, bias: torch.Tensor | None, max_norm: float, eps: float) -> None:
    if weight.dim() < 2:
        raise ValueError(
            f"weight must have a unit dimension and inputs (>= 2 dims), got {weight.dim()}"
        )
    squared = weight.reshape(weight.shape[0], -1).pow(2).sum(1)
    if bias is not None:
        squared = squared + bias.pow(2)
    norms = squared.sqrt()
    too_long = norms > max_norm
    if not bool(too_long.any()):
        return
    factor = torch.where(too_long, max_norm / (norms + eps), torch.ones_like(norms))
    weight[too_long] *= factor[too_long].reshape(-1, *([1] * (weight.dim() - 1)))
    if bias is not None:
        bias[too_long] *= factor[too_long]


class MaxNorm:
    """A max-norm constraint applied after every optimiser step or called on a model.

    >>> constraint = MaxNorm(3.0)
    >>> handle = constraint.attach(optimizer)   # renormalise after each optimizer.step()
    >>> constraint(model)                        # or apply it by hand

    ``modules``: the layers to constrain (default: every Linear/Conv of the model given to
    ``attach`` or ``__call__``). Srivastava et al. 2014 used ``c`` between 3 and 4 (``c = 2`` for
    their MNIST nets); Hinton et al. 2012 capped the squared length at 15 (``c = sqrt(15)``).
    """

    def __init__(
        self,
        max_norm: float,
        modules: Iterable[nn.Module] | None = None,
        *,
        include_bias: bool = False,
    ) -> None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or max_norm <= 0:
            raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
        self.max_norm = float(max_norm)
        self.modules = None if modules is None else list(modules)
        self.include_bias = bool(include_bias)

    def __call__(self, model: nn.Module | None = None) -> None:
        targets = self.modules if self.modules is not None else [model]
        if targets == [None]:
            raise ValueError("MaxNorm needs a model, or modules= at construction")
        for module in targets:
            max_norm_(module, self.max_norm, include_bias=self.include_bias)

    apply = __call__

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module | None = None):
        """Renormalise after every ``optimizer.step()``; returns a handle with ``.remove()``.

        Without ``modules=`` or ``model``, every 2-D-or-more parameter in the optimiser's groups
        is treated as a weight with units along dim 0 (biases are left alone)."""
        if self.modules is None and model is None:
            weights = [
                p for group in optimizer.param_groups for p in group["params"] if p.dim() >= 2
            ]

            def hook(opt, args, kwargs):
                for weight in weights:
                    max_norm_(weight, self.max_norm)
        else:

            def hook(opt, args, kwargs):
                self(model)

        return optimizer.register_step_post_hook(hook)

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.max_norm}, include_bias={self.include_bias})"
