"""The linear drop-probability schedule of DropBlock (Ghiasi, Lin, Le, NeurIPS 2018, sec. 3)."""

from __future__ import annotations

import torch
from torch import nn

from dropkit.ops.checks import check_int, check_module, check_probability

__all__ = ["DropBlockSchedule", "LinearSchedule"]


class DropBlockSchedule(nn.Module):
    """Ramp a layer's drop probability linearly over training steps (the DropBlock paper, sec. 3).

    ``p(step) = start + (stop - start) * min(step, steps) / steps``; the paper ramps the keep
    probability from 1 down to its target, i.e. ``start=0`` and ``stop`` the target drop rate.
    The scheduled attribute (default ``"p"``) of ``module`` is set from the current step before
    every forward of ``module`` and after every :meth:`step`. Call :meth:`step` once per training
    step. The step counter is a buffer (``step_count``), so it lives in the ``state_dict`` of any
    model the schedule is registered in, and loading a checkpoint mid-schedule continues exactly.
    The scheduled layer is referenced, not registered as a child, so it is not saved twice.

    >>> block = dropkit.nn.DropBlock2d(0.1, 7)
    >>> model.add_module("dropblock_schedule", DropBlockSchedule(block, 0.0, 0.1, steps=5000))
    >>> model.dropblock_schedule.step()  # once per optimiser step
    """

    def __init__(
        self, module: nn.Module, start: float, stop: float, steps: int, attribute: str = "p"
    ) -> None:
        super().__init__()
        op = "DropBlockSchedule"
        start = check_probability(start, "start", op=op, what="start")
        stop = check_probability(stop, "stop", op=op, what="stop")
        steps = check_int(steps, "steps", op=op, minimum=1)
        check_module(module, "module", op=op)
        if not isinstance(attribute, str):
            raise TypeError(f"{op}: attribute must be a str, got {type(attribute).__name__}")
        if not hasattr(module, attribute):
            raise ValueError(
                f"{op}: module {type(module).__name__} has no attribute {attribute!r} to schedule"
            )
        object.__setattr__(self, "target", module)
        self.start, self.stop, self.steps, self.attribute = start, stop, steps, attribute
        self.register_buffer("step_count", torch.zeros((), dtype=torch.int64))
        self._handle = module.register_forward_pre_hook(self._pre_hook)
        self._update()

    @property
    def value(self) -> float:
        """The scheduled probability at the current step."""
        fraction = min(int(self.step_count), self.steps) / self.steps
        return self.start + (self.stop - self.start) * fraction

    def _pre_hook(self, module: nn.Module, args) -> None:
        self._update()

    def _update(self) -> None:
        setattr(self.target, self.attribute, self.value)

    def step(self) -> None:
        """Advance the schedule by one training step."""
        self.step_count += 1
        self._update()

    def remove(self) -> None:
        """Detach the schedule from its layer (the layer keeps its current value)."""
        self._handle.remove()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The identity, so a schedule can sit inside an ``nn.Sequential`` it belongs to."""
        return input

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._update()

    def extra_repr(self) -> str:
        return (
            f"{self.attribute}: {self.start} -> {self.stop} over {self.steps} steps, "
            f"step={int(self.step_count)}"
        )


LinearSchedule = DropBlockSchedule  # the name of the first release
