"""``Dropout``: a drop-in replacement for ``torch.nn.Dropout`` with classic mode and seeding."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.nn._base import DropoutBase

__all__ = ["Dropout"]


class Dropout(DropoutBase):
    r"""Zero each element with probability ``p`` in training (:func:`dropkit.functional.dropout`).

    Same arguments, defaults and errors as ``torch.nn.Dropout``, plus ``mode`` (``"inverted"``,
    the default and torch's behaviour, or ``"classic"``: no scaling at train time, multiply by
    ``1-p`` at test time) and per-layer randomness (``generator``; ``seed`` for a fixed mask).

    Shape:
        - Input: :math:`(*)`, any shape.
        - Output: :math:`(*)`, same shape as the input.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout(
            input, self.p, self.training, self.inplace, mode=self.mode, **self._random_kwargs()
        )
