"""torchvision 0.28's stochastic ops (``torchvision.ops``) on dropkit's stream; swap one import.

Same names, arguments, defaults, argument order, errors and repr as ``torchvision.ops.
drop_block2d``, ``drop_block3d``, ``DropBlock2d``, ``DropBlock3d``, ``stochastic_depth`` and
``StochasticDepth``; the distributions are torchvision's (DropBlock: Ghiasi, Lin, Le, NeurIPS 2018;
stochastic depth: Huang et al., ECCV 2016), the random numbers dropkit's (Philox stream, seeded
from torch's generator, so ``torch.manual_seed`` reproduces a run; the values differ from
torchvision's ``bernoulli_`` draws). Keyword extras: ``generator=`` or ``seed=`` per call/layer.

Differences, all on inputs torchvision does not reject on purpose: integer inputs raise
``TypeError`` (torchvision multiplies them by a float mask); ``block_size < 1`` raises
``ValueError`` naming it (torchvision: ``RuntimeError`` from padding, or its even-size error for
0); ``eps <= 0`` raises ``ValueError`` (the normalisation would divide by zero when everything is
dropped); a ``p`` that is not a real number raises ``TypeError`` naming ``p``. The modules check
``p``, ``block_size`` and ``mode`` when built (torchvision: at the first forward), with the same
exception types. Inside :func:`dropkit.mc.stochastic` the ops sample with ``training=False``.
"""

from __future__ import annotations

import torch
import torch.fx

from dropkit import _state
from dropkit import functional as F
from dropkit.compat import _args
from dropkit.compat._args import PeerModule

__all__ = [
    "DropBlock2d",
    "DropBlock3d",
    "StochasticDepth",
    "drop_block2d",
    "drop_block3d",
    "stochastic_depth",
]


def _probability(p: object, end: str = "") -> float:
    """torchvision's check of ``p`` (ValueError outside [0, 1], its wording); NaN is refused too
    (torchvision's ``bernoulli_`` raises RuntimeError for it, which is kept)."""
    value = _args.real(p, "p")
    if value != value:
        raise RuntimeError(f"drop probability has to be between 0 and 1, but got {p}{end}")
    if value < 0.0 or value > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}{end}")
    return value


def _mode(mode: object) -> str:
    if mode not in ("batch", "row"):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    return mode


def _drop_block(input, p, block_size, inplace, eps, training, generator, seed, dims):
    p = _probability(p, ".")
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.ndim != dims + 2:
        raise ValueError(f"input should be {dims + 2} dimensional. Got {input.ndim} dimensions.")
    if not _state.is_stochastic(training) or p == 0.0:
        return input
    block_size = min(_args.block_size(block_size), *input.shape[2:])
    if block_size % 2 == 0:
        raise ValueError(f"block size should be odd. Got {block_size} which is even.")
    op = F.drop_block2d if dims == 2 else F.drop_block3d
    return op(
        input, p, block_size, bool(inplace), _args.real(eps, "eps"), training,
        per_channel=True, normalize="batch", generator=generator, seed=seed,
    )  # fmt: skip


def drop_block2d(
    input: torch.Tensor,
    p: float,
    block_size: int,
    inplace: bool = False,
    eps: float = 1e-06,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``torchvision.ops.drop_block2d``: DropBlock (Ghiasi, Lin, Le, NeurIPS 2018) on
    ``(N, C, H, W)``.

    With ``bs = min(block_size, H, W)`` (odd, else ``ValueError``) and
    :math:`\gamma = p\,H W / (bs^2 (H-bs+1)(W-bs+1))`, block centres are drawn
    Bernoulli(:math:`\gamma`) per sample and channel where a whole block fits, each zeroes the
    ``bs x bs`` square around it, and :math:`y = x\,M\,|M| / (\epsilon + \sum M)` with the sums
    over the whole batch. ``training=False`` or ``p = 0`` returns ``input`` itself.
    Implemented by :func:`dropkit.functional.drop_block2d` with ``per_channel=True,
    normalize="batch"``.
    """
    return _drop_block(input, p, block_size, inplace, eps, training, generator, seed, 2)


def drop_block3d(
    input: torch.Tensor,
    p: float,
    block_size: int,
    inplace: bool = False,
    eps: float = 1e-06,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``torchvision.ops.drop_block3d``: DropBlock on ``(N, C, D, H, W)``, cubes of side
    ``bs = min(block_size, D, H, W)`` (odd) and
    :math:`\gamma = p\,D H W / (bs^3 (D-bs+1)(H-bs+1)(W-bs+1))`; otherwise as
    :func:`drop_block2d`."""
    return _drop_block(input, p, block_size, inplace, eps, training, generator, seed, 3)


def stochastic_depth(
    input: torch.Tensor,
    p: float,
    mode: str,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``torchvision.ops.stochastic_depth`` (Huang et al., "Deep Networks with Stochastic Depth",
    ECCV 2016): :math:`y = x\,b / (1-p)`, :math:`b \sim \mathrm{Bernoulli}(1-p)` per sample
    (``mode="row"``) or once for the batch (``mode="batch"``); ``p = 1`` gives zeros;
    ``training=False`` or ``p = 0`` returns ``input``. Implemented by
    :func:`dropkit.functional.stochastic_depth`."""
    p = _probability(p)
    _mode(mode)
    return F.stochastic_depth(input, p, mode, training, generator=generator, seed=seed)


# Leaf calls for torch.fx.symbolic_trace, as torchvision does.
torch.fx.wrap("drop_block2d")
torch.fx.wrap("drop_block3d")
torch.fx.wrap("stochastic_depth")


class DropBlock2d(PeerModule):
    """``torchvision.ops.DropBlock2d(p, block_size, inplace=False, eps=1e-06)``; see
    :func:`drop_block2d`. Shape ``(N, C, H, W)`` -> same."""

    draws_once_per_batch = True  # normalised over the batch; see dropkit.mc

    def __init__(
        self,
        p: float,
        block_size: int,
        inplace: bool = False,
        eps: float = 1e-06,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        _probability(p, ".")
        _args.block_size(block_size)
        if not _args.real(eps, "eps") > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.p = p
        self.block_size = block_size
        self.inplace = inplace
        self.eps = eps

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return drop_block2d(input, self.p, self.block_size, self.inplace, self.eps, self.training,
                            **self._random_kwargs())  # fmt: skip

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(p={self.p}, block_size={self.block_size}, "
                f"inplace={self.inplace}{self._seed_repr()})")  # fmt: skip


class DropBlock3d(DropBlock2d):
    """``torchvision.ops.DropBlock3d(p, block_size, inplace=False, eps=1e-06)``; see
    :func:`drop_block3d`. Shape ``(N, C, D, H, W)`` -> same."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return drop_block3d(input, self.p, self.block_size, self.inplace, self.eps, self.training,
                            **self._random_kwargs())  # fmt: skip


class StochasticDepth(PeerModule):
    """``torchvision.ops.StochasticDepth(p, mode)``; see :func:`stochastic_depth`.
    Shape ``(N, ...)`` -> same."""

    draws_once_per_batch = property(lambda self: self.mode == "batch")  # see dropkit.mc

    def __init__(
        self,
        p: float,
        mode: str,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        _probability(p)
        self.p = p
        self.mode = _mode(mode)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training, **self._random_kwargs())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p}, mode={self.mode}{self._seed_repr()})"
