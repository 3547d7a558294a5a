"""DropBlock modules (Ghiasi, Lin, Le, NeurIPS 2018) over :mod:`dropkit.functional`."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.nn._base import StochasticModule
from dropkit.nn.schedule import DropBlockSchedule, LinearSchedule
from dropkit.ops.checks import check_drop_block_args, check_flag

__all__ = ["DropBlock2d", "DropBlock3d", "DropBlockSchedule", "LinearSchedule"]

_DEFAULTS = {"eps": 1e-06, "per_channel": True, "normalize": "sample", "border": "valid",
             "noise": False}  # fmt: skip


class DropBlock2d(StochasticModule):
    """DropBlock on ``(N, C, H, W)`` maps, in and out: :func:`dropkit.functional.drop_block2d` with
    these arguments (torchvision's ``DropBlock2d(p, block_size, inplace=False, eps=1e-06)``, timm's
    options, per-layer randomness ``generator``/``seed``). Identity in eval mode (outside
    :func:`dropkit.mc.stochastic`); ``p`` may change between steps (:class:`DropBlockSchedule`)."""

    draws_once_per_batch = property(lambda self: self.normalize == "batch")  # see dropkit.mc
    _functional = staticmethod(F.drop_block2d)

    def __init__(self, p: float, block_size: int, inplace: bool = False, eps: float = 1e-06, *,
                 per_channel: bool = True, normalize: str = "sample", border: str = "valid",
                 noise: bool = False, generator: torch.Generator | None = None,
                 seed: int | None = None) -> None:  # fmt: skip
        super().__init__(generator=generator, seed=seed)
        (self.p, self.block_size, self.eps, self.normalize, self.border, self.per_channel,
         self.noise) = check_drop_block_args(p, block_size, eps, normalize, border, per_channel,
                                             noise, type(self).__name__)  # fmt: skip
        self.inplace = check_flag(inplace, "inplace", op=type(self).__name__)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._functional(input, self.p, self.block_size, self.inplace, self.eps,
                                self.training, per_channel=self.per_channel,
                                normalize=self.normalize, border=self.border, noise=self.noise,
                                **self._random_kwargs())  # fmt: skip

    def extra_repr(self) -> str:
        text = f"p={self.p}, block_size={self.block_size}, inplace={self.inplace}"
        for name, default in _DEFAULTS.items():
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)!r}"
        return text + self._seed_repr()


class DropBlock3d(DropBlock2d):
    """DropBlock on ``(N, C, D, H, W)`` volumes: :func:`dropkit.functional.drop_block3d`, the
    arguments of :class:`DropBlock2d` (torchvision's ``DropBlock3d`` plus the extras)."""

    _functional = staticmethod(F.drop_block3d)
