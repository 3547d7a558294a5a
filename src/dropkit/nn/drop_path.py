"""Modules for stochastic depth / drop-path; see :mod:`dropkit.functional.drop_path`."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.nn._base import StochasticModule

__all__ = ["DropPath", "StochasticDepth"]


class StochasticDepth(StochasticModule):
    """``torchvision.ops.StochasticDepth(p, mode)``: drop the residual branch per sample
    (``"row"``) or once for the batch (``"batch"``), survivors scaled by ``1/(1-p)``; identity in
    eval mode. See :func:`dropkit.functional.stochastic_depth`. Shape ``(N, ...)`` -> same."""

    def __init__(self, p: float, mode: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
        if mode not in ("batch", "row"):
            raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
        self.p = float(p)
        self.mode = mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.stochastic_depth(input, self.p, self.mode, self.training, **self._random_kwargs())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p}, mode={self.mode}{self._seed_repr()})"


class DropPath(StochasticModule):
    """timm's ``DropPath(drop_prob=0., scale_by_keep=True)``: per-sample drop-path; identity in
    eval mode. See :func:`dropkit.functional.drop_path`. Shape ``(N, ...)`` -> same."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if (
            isinstance(drop_prob, bool)
            or not isinstance(drop_prob, (int, float))
            or not 0.0 <= drop_prob <= 1.0
        ):
            raise ValueError(f"drop_prob has to be between 0 and 1, but got {drop_prob}")
        self.drop_prob = float(drop_prob)
        self.scale_by_keep = bool(scale_by_keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.drop_path(
            x, self.drop_prob, self.training, self.scale_by_keep, **self._random_kwargs()
        )

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}{self._seed_repr()}"
