"""timm 1.0.31's ``DropBlock2d``, ``drop_block_2d``, ``DropPath``, ``drop_path`` and
``calculate_drop_path_rates`` (``timm.layers``) on dropkit's stream; swap one import.

Same names, arguments, defaults, argument order, repr and border handling as timm 1.0.31
(timm >= 1.0.23 seeds DropBlock's blocks anywhere and clips them at the border); the random numbers
are dropkit's (Philox stream seeded from torch's generator, so ``torch.manual_seed`` reproduces a
run, but the values differ from timm's ``bernoulli_`` draws). Keyword extras: ``generator=`` or
``seed=`` per call/layer. Inside :func:`dropkit.mc.stochastic` the modules (and ``drop_path`` with
``training=False``) sample.

Differences, on inputs timm does not reject on purpose: a probability outside [0, 1] raises
``RuntimeError`` naming the argument (timm: ``RuntimeError`` from ``bernoulli_``), already when a
module is built; ``drop_prob * gamma_scale > 1`` raises ``ValueError`` (timm samples with it as
long as its seed rate stays <= 1; dropkit's DropBlock takes a probability); ``block_size < 1``
raises ``ValueError`` (timm: ``ZeroDivisionError`` or ``RuntimeError``); integer inputs raise
``TypeError`` (timm multiplies them by a float mask).
"""

from __future__ import annotations

import warnings

import torch
import torch.fx

from dropkit import _state
from dropkit import functional as F
from dropkit.compat import _args
from dropkit.compat._args import PeerModule

__all__ = ["DropBlock2d", "DropPath", "calculate_drop_path_rates", "drop_block_2d", "drop_path"]

# timm divides by (kept + 1e-7) when it rescales DropBlock's survivors.
_EPS = 1e-07
# Arguments timm removed in 1.0.23 and still consumes without a word.
_REMOVED = ("batchwise", "fast")


def _block_rate(drop_prob: object, gamma_scale: object) -> float:
    """``drop_prob * gamma_scale``, the probability handed to dropkit's DropBlock."""
    p = _args.real(drop_prob, "drop_prob") * _args.real(gamma_scale, "gamma_scale")
    if not p >= 0.0:  # negative or NaN: timm's bernoulli_ raises RuntimeError
        raise RuntimeError(
            f"drop_prob * gamma_scale has to be between 0 and 1, but got {drop_prob} * "
            f"{gamma_scale} = {p}"
        )
    if p > 1.0:
        raise ValueError(
            f"drop_prob * gamma_scale has to be at most 1 in dropkit, but got {drop_prob} * "
            f"{gamma_scale} = {p}"
        )
    return p


def _path_rate(drop_prob: object) -> float:
    if type(drop_prob) is float and 0.0 <= drop_prob <= 1.0:  # the common call
        return drop_prob
    p = _args.real(drop_prob, "drop_prob")
    if not 0.0 <= p <= 1.0:  # timm's bernoulli_(1 - drop_prob) raises RuntimeError
        raise RuntimeError(f"drop_prob has to be between 0 and 1, but got {drop_prob}")
    return p


def drop_block_2d(
    x: torch.Tensor,
    drop_prob: float = 0.1,
    block_size: int = 7,
    gamma_scale: float = 1.0,
    with_noise: bool = False,
    inplace: bool = False,
    couple_channels: bool = True,
    scale_by_keep: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``timm.layers.drop_block_2d``: DropBlock (Ghiasi, Lin, Le, NeurIPS 2018) as timm 1.0.31
    computes it, on ``(B, C, H, W)``; always samples (timm's functional has no ``training``).

    With ``kh = min(block_size, H)``, ``kw = min(block_size, W)`` and
    :math:`\gamma = s\,p\,H W / (k_h k_w (H-k_h+1)(W-k_w+1))` (``s = gamma_scale``,
    ``p = drop_prob``), block centres are drawn Bernoulli(:math:`\gamma`) at every position, one
    map per sample shared by the channels (``couple_channels=True``) or one per channel; each
    zeroes the ``kh x kw`` box ``[h - kh//2, h - kh//2 + kh) x [w - kw//2, w - kw//2 + kw)``
    clipped at the border. Then :math:`y = x\,M\,|M| / (\sum M + 10^{-7})` with the sums over the
    whole mask (``scale_by_keep=True``), :math:`y = x\,M` (``scale_by_keep=False``), or, with
    ``with_noise=True``, :math:`y = x\,M + z\,(1 - M)` with standard normals :math:`z` and no
    rescaling. Implemented by :func:`dropkit.functional.drop_block2d` with ``p = s p``,
    ``border="clip"``, ``per_channel=not couple_channels``, ``normalize="batch"`` (or ``"none"``)
    and ``noise=with_noise``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"drop_block_2d: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:  # timm unpacks B, C, H, W = x.shape: ValueError
        raise ValueError(f"drop_block_2d: expected a 4D input (B, C, H, W), got {x.dim()}D")
    p = _block_rate(drop_prob, gamma_scale)
    block_size = _args.block_size(block_size)
    with_noise = bool(with_noise)
    normalize = "batch" if scale_by_keep and not with_noise else "none"
    return F.drop_block2d(
        x, p, block_size, bool(inplace), _EPS, True, per_channel=not couple_channels,
        normalize=normalize, border="clip", noise=with_noise, generator=generator, seed=seed,
    )  # fmt: skip


def drop_path(
    x: torch.Tensor,
    drop_prob: float = 0.0,
    training: bool = False,
    scale_by_keep: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``timm.layers.drop_path``: drop-path / stochastic depth (Huang et al., ECCV 2016) per
    sample, :math:`y_n = x_n b_n / (1 - p)` with :math:`b_n \sim \mathrm{Bernoulli}(1 - p)`
    (:math:`y_n = x_n b_n` with ``scale_by_keep=False`` or ``p = 1``). ``drop_prob == 0`` or
    ``training=False`` (outside :func:`dropkit.mc.stochastic`) returns ``x`` itself.
    Implemented by :func:`dropkit.functional.drop_path`."""
    if drop_prob == 0.0 or not _state.is_stochastic(training):
        return x
    p = _path_rate(drop_prob)
    return F.drop_path(x, p, True, bool(scale_by_keep), generator=generator, seed=seed)


# Leaf calls for torch.fx.symbolic_trace (dropkit's ops cannot take fx proxies).
torch.fx.wrap("drop_block_2d")
torch.fx.wrap("drop_path")


class DropBlock2d(PeerModule):
    """``timm.layers.DropBlock2d``; see :func:`drop_block_2d`. Identity in eval mode (outside
    :func:`dropkit.mc.stochastic`) or at ``drop_prob == 0``. As timm, the arguments removed in
    1.0.23 (``batchwise``, ``fast``) are accepted and ignored, any other unknown keyword warns.
    Shape ``(B, C, H, W)`` -> same."""

    draws_once_per_batch = property(lambda self: self.scale_by_keep and not self.with_noise)

    def __init__(
        self,
        drop_prob: float = 0.1,
        block_size: int = 7,
        gamma_scale: float = 1.0,
        with_noise: bool = False,
        inplace: bool = False,
        couple_channels: bool = True,
        scale_by_keep: bool = True,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        _block_rate(drop_prob, gamma_scale)
        _args.block_size(block_size)
        self.drop_prob = drop_prob
        self.gamma_scale = gamma_scale
        self.block_size = block_size
        self.with_noise = with_noise
        self.inplace = inplace
        self.couple_channels = couple_channels
        self.scale_by_keep = scale_by_keep
        for key in kwargs:
            if key not in _REMOVED:
                warnings.warn(
                    f"DropBlock2d() got unexpected keyword argument '{key}'", stacklevel=2
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _state.is_stochastic(self.training) or not self.drop_prob:
            return x
        return drop_block_2d(
            x, self.drop_prob, self.block_size, self.gamma_scale, self.with_noise, self.inplace,
            self.couple_channels, self.scale_by_keep, **self._random_kwargs(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return self._seed_repr().removeprefix(", ")  # timm shows nothing: DropBlock2d()


class DropPath(PeerModule):
    """``timm.layers.DropPath(drop_prob=0., scale_by_keep=True)``; see :func:`drop_path`.
    Shape ``(N, ...)`` -> same."""

    def __init__(
        self,
        drop_prob: float = 0.0,
        scale_by_keep: bool = True,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        _path_rate(drop_prob)
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep,
                         **self._random_kwargs())  # fmt: skip

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}{self._seed_repr()}"


def calculate_drop_path_rates(
    drop_path_rate: float,
    depths: int | list[int],
    stagewise: bool = False,
) -> list[float] | list[list[float]]:
    r"""``timm.layers.calculate_drop_path_rates``: the linearly increasing drop-path schedule.

    The rule of Huang et al. (ECCV 2016) as timm spaces it: for ``n`` blocks in all, block ``i``
    (``0 .. n-1``) gets :math:`r_i = \mathrm{rate} \cdot i / (n - 1)` — 0 for the first block,
    ``drop_path_rate`` for the last — computed by ``torch.linspace`` in float32 (so the values are
    timm's, float32-rounded). ``depths`` an int: the ``n`` rates (``stagewise=True`` raises
    ``ValueError``). ``depths`` a list of stage depths: the ``sum(depths)`` rates as one flat list,
    or with ``stagewise=True`` split into one list per stage.

    (:func:`dropkit.functional.linear_decay_rates` is the paper's ``l / L * p_L`` for
    ``l = 1 .. L``, which never gives a block rate 0.)
    """
    if isinstance(depths, int):
        if stagewise:
            raise ValueError("stagewise=True requires depths to be a list of stage depths")
        return torch.linspace(0, drop_path_rate, depths, device="cpu").tolist()
    rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu")
    if stagewise:
        return [stage.tolist() for stage in rates.split(list(depths))]
    return rates.tolist()
