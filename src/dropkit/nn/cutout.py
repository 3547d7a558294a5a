"""``Cutout`` (DeVries & Taylor 2017): square holes in input images, as a module."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.functional.cutout import check_cutout_args
from dropkit.nn._base import StochasticModule

__all__ = ["Cutout"]


class Cutout(StochasticModule):
    """Cutout augmentation (:func:`dropkit.functional.cutout`); the identity in eval mode.

    Args:
        size: side of each square hole (integer >= 0).
        n_holes: holes per image (integer >= 0).
        fill: value written into the holes.
        generator, seed: per-layer randomness (a fixed ``seed`` gives the same holes every call).

    Shape: ``(C, H, W)`` or ``(N, C, H, W)``; output the same.
    """

    def __init__(
        self,
        size: int,
        n_holes: int = 1,
        fill: float = 0.0,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        self.size, self.n_holes, self.fill = check_cutout_args(size, n_holes, fill, "Cutout")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.cutout(
            input, self.size, self.n_holes, self.fill, self.training, **self._random_kwargs()
        )

    def extra_repr(self) -> str:
        return f"size={self.size}, n_holes={self.n_holes}, fill={self.fill}{self._seed_repr()}"
