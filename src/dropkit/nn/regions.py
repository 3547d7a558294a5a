"""DropBlock modules and the linear drop-probability schedule."""

from __future__ import annotations

import torch
from torch import nn

from dropkit import functional as F
from dropkit.nn._base import StochasticModule

__all__ = ["DropBlock2d", "DropBlock3d", "LinearSchedule"]


class DropBlock2d(StochasticModule):
    """DropBlock on ``(N, C, H, W)`` maps (:func:`dropkit.functional.drop_block2d`), torchvision's
    ``DropBlock2d(p, block_size, inplace, eps)`` plus ``per_channel`` and ``normalize``."""

    _functional = staticmethod(F.drop_block2d)

    def __init__(
        self,
        p: float,
        block_size: int,
        inplace: bool = False,
        eps: float = 1e-06,
        *,
        per_channel: bool = True,
        normalize: str = "sample",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
        if normalize not in ("sample", "batch"):
            raise ValueError(f"normalize must be one of ('sample', 'batch'), got {normalize!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.p = float(p)
        self.block_size = block_size
        self.inplace = bool(inplace)
        self.eps = float(eps)
        self.per_channel = bool(per_channel)
        self.normalize = normalize

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._functional(
            input, self.p, self.block_size, self.inplace, self.eps, self.training,
            per_channel=self.per_channel, normalize=self.normalize, **self._random_kwargs(),
        )  # fmt: skip

    def __repr__(self) -> str:
        extra = "" if self.per_channel else ", per_channel=False"
        extra += "" if self.normalize == "sample" else f", normalize={self.normalize!r}"
        return (
            f"{self.__class__.__name__}(p={self.p}, block_size={self.block_size}, "
            f"inplace={self.inplace}, eps={self.eps}{extra}{self._seed_repr()})"
        )


class DropBlock3d(DropBlock2d):
    """DropBlock on ``(N, C, D, H, W)`` volumes (:func:`dropkit.functional.drop_block3d`)."""

    _functional = staticmethod(F.drop_block3d)


class LinearSchedule(nn.Module):
    """Ramp a module's drop probability linearly over training steps (DropBlock's schedule).

    ``p(step) = start + (stop - start) * min(step, steps) / steps``. Before every forward of
    ``module`` its attribute ``attribute`` (default ``"p"``) is set from the current step; call
    :meth:`step` once per training step. The step counter is a buffer, so it is saved in the
    ``state_dict`` of any model that holds the schedule, and a resumed run continues exactly.

    >>> block = DropBlock2d(0.1, 7)
    >>> schedule = LinearSchedule(block, start=0.0, stop=0.1, steps=5000)
    >>> model.add_module("dropblock_schedule", schedule)   # saved with the model
    """

    def __init__(
        self, module: nn.Module, start: float, stop: float, steps: int, attribute: str = "p"
    ) -> None:
        super().__init__()
        for name, value in (("start", start), ("stop", stop)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if not hasattr(module, attribute):
            raise ValueError(f"{type(module).__name__} has no attribute {attribute!r} to schedule")
        # held outside the module tree so the scheduled layer is not registered (and saved) twice
        object.__setattr__(self, "target", module)
        self.start, self.stop, self.steps, self.attribute = (
            float(start),
            float(stop),
            steps,
            attribute,
        )
        self.register_buffer("step_count", torch.zeros((), dtype=torch.int64))
        self._handle = module.register_forward_pre_hook(lambda m, args: self._update())
        self._update()

    @property
    def value(self) -> float:
        fraction = min(int(self.step_count), self.steps) / self.steps
        return self.start + (self.stop - self.start) * fraction

    def _update(self) -> None:
        setattr(self.target, self.attribute, self.value)

    def step(self) -> None:
        """Advance the schedule by one training step."""
        self.step_count += 1
        self._update()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._update()

    def extra_repr(self) -> str:
        return (
            f"{self.attribute}: {self.start} -> {self.stop} over {self.steps} steps, "
            f"step={int(self.step_count)}"
        )
