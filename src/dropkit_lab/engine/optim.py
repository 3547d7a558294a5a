"""SGD as in the dropout papers: momentum ramp, learning-rate decay, step scaled by (1 - m).

Hinton et al. 2012 (appendix A) and Srivastava et al. 2014 (appendix A.1/B.1) update

    v <- m v - (1 - m) lr g,        w <- w + v,

with the learning rate ``lr_e = lr * decay**e`` in epoch ``e`` and the momentum rising linearly
from ``m0`` to ``m1`` over the first ``ramp`` epochs, then held. ``torch.optim.SGD`` differs (its
first step sets ``v = g`` and it has no (1 - m) factor), hence this small optimizer.
Then the max-norm constraint rescales each hidden unit's incoming weight vector to length at
most ``c`` (:func:`apply_max_norm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["HintonSGD", "Schedule", "apply_max_norm"]


@dataclass(frozen=True)
class Schedule:
    lr: float
    lr_decay: float = 1.0
    momentum_start: float = 0.5
    momentum_end: float = 0.99
    momentum_epochs: int = 500

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        for name in ("momentum_start", "momentum_end"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.momentum_epochs < 0:
            raise ValueError(f"momentum_epochs must be >= 0, got {self.momentum_epochs}")

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_decay**epoch

    def momentum_at(self, epoch: int) -> float:
        if epoch >= self.momentum_epochs:
            return self.momentum_end
        t = epoch / self.momentum_epochs
        return self.momentum_start + t * (self.momentum_end - self.momentum_start)


class HintonSGD(torch.optim.Optimizer):
    """``v <- m v - (1 - m) lr g; w <- w + v`` (``scale_step=False`` drops the (1 - m))."""

    def __init__(self, params, lr: float, momentum: float = 0.5, scale_step: bool = True):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "scale_step": scale_step})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            m, lr = group["momentum"], group["lr"]
            step = (1.0 - m) * lr if group["scale_step"] else lr
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(m).add_(p.grad, alpha=-step)
                p.add_(v)
        return loss


def apply_max_norm(weights: list[torch.Tensor], max_norm: float) -> None:
    """Rescale each row (a unit's incoming weights) of each ``(out, in)`` matrix to norm <= c.

    Uses :mod:`dropkit.constraints` when the package has it, else ``torch.renorm``.
    """
    try:
        from dropkit.constraints import max_norm_
    except ImportError:
        max_norm_ = None
    with torch.no_grad():
        for w in weights:
            if max_norm_ is not None:
                max_norm_(w, max_norm)
            else:
                w.renorm_(2, 0, max_norm)
