"""``BroadcastDropout``: one mask over a broadcastable ``noise_shape`` (Keras semantics)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit import functional as F
from dropkit.functional.broadcast import check_noise_shape
from dropkit.nn._base import DropoutBase

__all__ = ["BroadcastDropout"]


class BroadcastDropout(DropoutBase):
    """One mask of ``noise_shape`` broadcast over the input (``functional.broadcast_dropout``).

    ``noise_shape`` has one entry per input dimension: ``None`` (the input's size: independent
    along it) or an integer (1 shares the mask along that dimension; any other value must equal
    the input's size, checked in forward).

    Shape: input and output of any shape with ``len(noise_shape)`` dimensions.
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        noise_shape: Sequence[int | None],
        mode: str = "inverted",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, inplace, mode=mode, generator=generator, seed=seed)
        self.noise_shape = check_noise_shape(noise_shape, "BroadcastDropout")

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
