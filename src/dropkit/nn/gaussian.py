"""``GaussianDropout``: multiplicative Gaussian noise N(1, p/(1-p)) (Srivastava et al. 2014)."""

from __future__ import annotations

import torch

from dropkit import functional as F
from dropkit.functional.gaussian import check_gaussian_p
from dropkit.nn._base import StochasticModule
from dropkit.ops.checks import check_flag

__all__ = ["GaussianDropout"]


class GaussianDropout(StochasticModule):
    """Multiplicative noise ``N(1, p/(1-p))`` (:func:`~dropkit.functional.gaussian_dropout`);
    the identity in evaluation.

    Shape: any; output the same.
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        self.p = check_gaussian_p(p)
        self.inplace = check_flag(inplace, "inplace", op="GaussianDropout")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.gaussian_dropout(
            input, self.p, self.training, self.inplace, **self._random_kwargs()
        )

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}{self._seed_repr()}"
