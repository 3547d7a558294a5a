"""What every dropkit module shares (like torch's ``_DropoutNd``): per-layer randomness, torch-style
hyper-parameters validated in ``__init__`` by the functionals' own checks, a name that says the
module is dropkit's, and a clear refusal of ``torch.jit.script``."""

from __future__ import annotations

import torch
from torch import nn

from dropkit.functional._common import check_mode
from dropkit.ops.checks import check_flag, check_probability, check_random

__all__ = ["DropoutBase", "RandomMixin", "StochasticModule"]


class RandomMixin:
    """Per-layer randomness (``generator`` or a fixed ``seed``) for any module class.

    The generator is part of the module's state: pickling, ``copy.deepcopy`` and ``torch.save``
    keep it (with its state at that moment); the ``state_dict`` does not hold it.
    """

    def _init_random(self, generator, seed) -> None:
        self.generator, self.seed = check_random(generator, seed)

    def _random_kwargs(self) -> dict:
        return {"generator": self.generator, "seed": self.seed}

    def _seed_repr(self) -> str:
        return "" if self.seed is None else f", seed={self.seed}"

    def _get_name(self) -> str:
        # Printed models show which layers are dropkit's (torch's twins print the bare name).
        return f"dropkit.{type(self).__name__}"

    def __prepare_scriptable__(self):
        raise RuntimeError(
            f"{self._get_name()} cannot be compiled by torch.jit.script: its ops draw their seeds "
            "and route their calls in Python. Use torch.compile (fullgraph=True works) or "
            "torch.export instead; torch.jit.trace records a fresh draw on every call."
        )


class StochasticModule(RandomMixin, nn.Module):
    """A module with per-layer randomness; see :class:`RandomMixin`."""

    def __init__(self, *, generator: torch.Generator | None = None, seed: int | None = None):
        super().__init__()
        self._init_random(generator, seed)


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
        self.p = check_probability(p, op=type(self).__name__)
        self.inplace = check_flag(inplace, "inplace", op=type(self).__name__)
        self.mode = check_mode(mode, type(self).__name__)

    def extra_repr(self) -> str:
        text = f"p={self.p}, inplace={self.inplace}"
        if self.mode != "inverted":
            text += f", mode={self.mode!r}"
        return text + self._seed_repr()
