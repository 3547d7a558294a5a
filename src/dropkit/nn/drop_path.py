"""Modules for stochastic depth / drop-path; see :mod:`dropkit.functional.drop_path`."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.functional.drop_path import check_drop_path_args
from dropkit.nn._base import StochasticModule
from dropkit.ops.checks import check_flag

__all__ = ["DropPath", "StochasticDepth"]


class StochasticDepth(StochasticModule):
    """``torchvision.ops.StochasticDepth(p, mode)``: drop the residual branch per sample
    (``"row"``) or once for the batch (``"batch"``), survivors scaled by ``1/(1-p)``; identity in
    eval mode. See :func:`dropkit.functional.stochastic_depth`. Shape ``(N, ...)`` -> same."""

    draws_once_per_batch = property(lambda self: self.mode == "batch")  # see dropkit.mc

    def __init__(
        self,
        p: float,
        mode: str,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        self.p = check_drop_path_args(p, "p", "StochasticDepth", mode)
        self.mode = mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.stochastic_depth(input, self.p, self.mode, self.training, **self._random_kwargs())

    def __repr__(self) -> str:
        return f"{self._get_name()}(p={self.p}, mode={self.mode}{self._seed_repr()})"


class DropPath(StochasticModule):
    """timm's ``DropPath(drop_prob=0., scale_by_keep=True)``: per-sample drop-path; identity in
    eval mode. See :func:`dropkit.functional.drop_path`. Shape ``(N, ...)`` -> same."""

    def __init__(
        self,
        drop_prob: float = 0.0,
        scale_by_keep: bool = True,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        self.drop_prob = check_drop_path_args(drop_prob, "drop_prob", "DropPath")
        self.scale_by_keep = check_flag(scale_by_keep, "scale_by_keep", op="DropPath")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.drop_path(
            x, self.drop_prob, self.training, self.scale_by_keep, **self._random_kwargs()
        )

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}{self._seed_repr()}"
