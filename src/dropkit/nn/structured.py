"""Modules for broadcast, channel (spatial) and locked dropout; see :mod:`dropkit.functional`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit import functional as F
from dropkit.nn._base import DropoutBase

__all__ = ["BroadcastDropout", "Dropout1d", "Dropout2d", "Dropout3d", "LockedDropout"]


class BroadcastDropout(DropoutBase):
    """One mask of ``noise_shape`` broadcast over the input (``functional.broadcast_dropout``).

    Shape: input and output of any shape with ``len(noise_shape)`` dimensions.
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        noise_shape: Sequence[int | None],
        **kwargs,
    ) -> None:
        super().__init__(p, inplace, **kwargs)
        for n in noise_shape:
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ValueError(f"noise_shape entries must be None or integers >= 1, got {n!r}")
        self.noise_shape = tuple(noise_shape)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.broadcast_dropout(
            input,
            self.p,
            self.training,
            self.inplace,
            noise_shape=self.noise_shape,
            mode=self.mode,
            **self._random_kwargs(),
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, noise_shape={self.noise_shape}"


class _ChannelDropout(DropoutBase):
    _functional = staticmethod(F.dropout2d)

    def __init__(self, p: float = 0.5, inplace: bool = False, *, channels_last: bool = False,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(p, inplace, **kwargs)
        self.channels_last = bool(channels_last)

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
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` input (``torch.nn.Dropout1d``)."""

    _functional = staticmethod(F.dropout1d)


class Dropout2d(_ChannelDropout):
    """Zero whole channels of ``(N, C, H, W)`` input (``torch.nn.Dropout2d``)."""

    _functional = staticmethod(F.dropout2d)


class Dropout3d(_ChannelDropout):
    """Zero whole channels of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input (torch's Dropout3d)."""

    _functional = staticmethod(F.dropout3d)


class LockedDropout(DropoutBase):
    """One mask per sequence shared over time (:func:`~dropkit.functional.locked_dropout`).

    Shape: ``(T, N, C)``, or ``(N, T, C)`` with ``batch_first=True``; output the same.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, batch_first: bool = False,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(p, inplace, **kwargs)
        self.batch_first = bool(batch_first)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.locked_dropout(
            input,
            self.p,
            self.training,
            batch_first=self.batch_first,
            inplace=self.inplace,
            mode=self.mode,
            **self._random_kwargs(),
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, batch_first={self.batch_first}"
