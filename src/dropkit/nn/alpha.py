"""``AlphaDropout`` / ``FeatureAlphaDropout`` for SELU networks, with torch's semantics."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.nn._base import StochasticModule
from dropkit.ops.checks import check_flag, check_probability

__all__ = ["AlphaDropout", "FeatureAlphaDropout"]


class AlphaDropout(StochasticModule):
    """Alpha dropout for SELU networks (``torch.nn.AlphaDropout`` semantics; see
    :func:`dropkit.functional.alpha_dropout`). The identity in evaluation.

    Shape: any; output the same.
    """

    _feature = False

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        self.p = check_probability(p, op=type(self).__name__)
        self.inplace = check_flag(inplace, "inplace", op=type(self).__name__)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        fn = F.feature_alpha_dropout if self._feature else F.alpha_dropout
        return fn(input, self.p, self.training, self.inplace, **self._random_kwargs())

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}{self._seed_repr()}"


class FeatureAlphaDropout(AlphaDropout):
    """Alpha dropout of whole channels of ``(N, C, ...)`` input (``torch.nn.FeatureAlphaDropout``
    semantics; see :func:`dropkit.functional.feature_alpha_dropout`)."""

    _feature = True
