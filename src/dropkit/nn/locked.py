"""``LockedDropout``: variational dropout for sequences, one mask per sequence."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.nn._base import DropoutBase
from dropkit.ops.checks import check_flag

__all__ = ["LockedDropout"]


class LockedDropout(DropoutBase):
    """One mask per sequence shared over time (:func:`~dropkit.functional.locked_dropout`).

    Shape: ``(T, N, C)``, or ``(N, T, C)`` with ``batch_first=True``; output the same.
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        batch_first: bool = False,
        mode: str = "inverted",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, inplace, mode=mode, generator=generator, seed=seed)
        self.batch_first = check_flag(batch_first, "batch_first", op="LockedDropout")

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
