"""``Dropout1d/2d/3d``: channel ("spatial") dropout with torch's semantics, channels-last too."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.nn._base import DropoutBase
from dropkit.ops.checks import check_flag

__all__ = ["Dropout1d", "Dropout2d", "Dropout3d"]


class _ChannelDropout(DropoutBase):
    _functional = staticmethod(F.dropout2d)

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        channels_last: bool = False,
        mode: str = "inverted",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, inplace, mode=mode, generator=generator, seed=seed)
        self.channels_last = check_flag(channels_last, "channels_last", op=type(self).__name__)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._functional(
            input,
            self.p,
            self.training,
            self.inplace,
            channels_last=self.channels_last,
            mode=self.mode,
            **self._random_kwargs(),
        )

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (", channels_last=True" if self.channels_last else "")


class Dropout1d(_ChannelDropout):
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` input (``torch.nn.Dropout1d``);
    ``(N, L, C)`` / ``(L, C)`` with ``channels_last=True``. See
    :func:`dropkit.functional.dropout1d`."""

    _functional = staticmethod(F.dropout1d)


class Dropout2d(_ChannelDropout):
    """Zero whole channels of ``(N, C, H, W)`` input (``torch.nn.Dropout2d``, including its
    treatment of 3D input as ``(N, C, L)``); ``(N, H, W, C)`` with ``channels_last=True``. See
    :func:`dropkit.functional.dropout2d`."""

    _functional = staticmethod(F.dropout2d)


class Dropout3d(_ChannelDropout):
    """Zero whole channels of ``(N, C, D, H, W)`` / ``(C, D, H, W)`` input (``torch.nn.Dropout3d``);
    ``(N, D, H, W, C)`` / ``(D, H, W, C)`` with ``channels_last=True``. See
    :func:`dropkit.functional.dropout3d`."""

    _functional = staticmethod(F.dropout3d)
