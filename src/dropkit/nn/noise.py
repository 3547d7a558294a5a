"""Modules for Gaussian and alpha dropout; see :mod:`dropkit.functional`."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.functional._checks import check_probability
from dropkit.nn._base import StochasticModule

__all__ = ["AlphaDropout", "FeatureAlphaDropout", "GaussianDropout"]


class GaussianDropout(StochasticModule):
    """Multiplicative noise ``N(1, p/(1-p))`` (:func:`~dropkit.functional.gaussian_dropout`).

    Shape: any; output the same.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"gaussian dropout probability p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.inplace = bool(inplace)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.gaussian_dropout(
            input, self.p, self.training, self.inplace, **self._random_kwargs()
        )

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}{self._seed_repr()}"


class AlphaDropout(StochasticModule):
    """Alpha dropout for SELU networks (``torch.nn.AlphaDropout`` semantics)."""

    _feature = False

    def __init__(self, p: float = 0.5, inplace: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.p = check_probability(p)
        self.inplace = bool(inplace)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        fn = F.feature_alpha_dropout if self._feature else F.alpha_dropout
        return fn(input, self.p, self.training, self.inplace, **self._random_kwargs())

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}{self._seed_repr()}"


class FeatureAlphaDropout(AlphaDropout):
    """Alpha dropout of whole channels (``torch.nn.FeatureAlphaDropout`` semantics)."""

    _feature = True
