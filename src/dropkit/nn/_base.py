"""Shared hyper-parameter handling for dropkit's modules (like torch's ``_DropoutNd``)."""

from __future__ import annotations

import torch
from torch import nn

from dropkit.functional._checks import check_mode, check_probability


class StochasticModule(nn.Module):
    """The per-layer randomness (``generator`` or a fixed ``seed``) every dropkit module takes.

    A ``torch.Generator`` cannot be pickled; a pickled or deep-copied layer falls back to the
    default generator rather than failing.
    """

    def __init__(self, *, generator: torch.Generator | None = None, seed: int | None = None):
        super().__init__()
        if generator is not None and seed is not None:
            raise ValueError("pass either seed or generator, not both")
        self.generator = generator
        self.seed = seed

    def _random_kwargs(self) -> dict:
        return {"generator": self.generator, "seed": self.seed}

    def _seed_repr(self) -> str:
        return "" if self.seed is None else f", seed={self.seed}"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["generator"] = None
        return state


class DropoutBase(StochasticModule):
    """``p``, ``inplace`` and ``mode``, validated in ``__init__`` and shown torch-style."""

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
        super().__init__(generator=generator, seed=seed)
        self.p = check_probability(p)
        self.inplace = bool(inplace)
        self.mode = check_mode(mode)

    def extra_repr(self) -> str:
        text = f"p={self.p}, inplace={self.inplace}"
        if self.mode != "inverted":
            text += f", mode={self.mode!r}"
        return text + self._seed_repr()
