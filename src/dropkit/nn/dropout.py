"""``Dropout``: a drop-in replacement for ``torch.nn.Dropout`` with classic mode and seeding."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.nn._base import DropoutBase, StochasticModule
from dropkit.ops.checks import check_probability

__all__ = ["BiasDropoutAdd", "Dropout"]


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


class BiasDropoutAdd(StochasticModule):
    r"""``residual + dropout(x + bias)`` in one pass (:func:`dropkit.functional.bias_dropout_add`,
    Megatron-LM's fused bias-dropout-add). ``forward(x, bias, residual)``; evaluation gives
    ``residual + x + bias``. Only the inverted mode exists (the residual stream is not rescaled).

    Shape: ``x`` and ``residual`` ``(*, H)``, ``bias`` broadcastable to ``x`` (usually ``(H,)``).
    """

    def __init__(
        self,
        p: float = 0.5,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        self.p = check_probability(p, op="BiasDropoutAdd")

    def forward(self, x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return F.bias_dropout_add(x, bias, residual, self.p, self.training,
                                  **self._random_kwargs())  # fmt: skip

    def extra_repr(self) -> str:
        return f"p={self.p}{self._seed_repr()}"
