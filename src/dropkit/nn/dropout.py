"""``Dropout``: a drop-in replacement for ``torch.nn.Dropout`` with classic mode and seeding."""

from __future__ import annotations

import torch
from torch import nn

from dropkit import functional as F
from dropkit.functional._checks import check_mode, check_probability

__all__ = ["Dropout"]


class Dropout(nn.Module):
    r"""Zero each element with probability ``p`` in training (:func:`dropkit.functional.dropout`).

    Same arguments, defaults and errors as ``torch.nn.Dropout``, plus ``mode`` (``"inverted"``,
    the default and torch's behaviour, or ``"classic"``: no scaling at train time, multiply by
    ``1-p`` at test time) and per-layer randomness (``generator``; ``seed`` for a fixed mask).

    Shape:
        - Input: :math:`(*)`, any shape.
        - Output: :math:`(*)`, same shape as the input.
    """

    __constants__ = ["p", "inplace", "mode"]

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        mode: str = "inverted",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.p = check_probability(p)
        self.inplace = bool(inplace)
        self.mode = check_mode(mode)
        if generator is not None and seed is not None:
            raise ValueError("pass either seed or generator, not both")
        self.generator = generator
        self.seed = seed

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout(
            input,
            self.p,
            self.training,
            self.inplace,
            mode=self.mode,
            generator=self.generator,
            seed=self.seed,
        )

    def extra_repr(self) -> str:
        text = f"p={self.p}, inplace={self.inplace}"
        if self.mode != "inverted":
            text += f", mode={self.mode!r}"
        if self.seed is not None:
            text += f", seed={self.seed}"
        return text

    def __getstate__(self):
        # torch.Generator cannot be pickled; a pickled/deep-copied layer falls back to the default
        # generator rather than failing.
        state = self.__dict__.copy()
        state["generator"] = None
        return state
