"""``DropConnectLinear`` and ``DropConnectConv2d`` (Wan et al. 2013)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dropkit import functional as F
from dropkit.functional._common import check_mode
from dropkit.functional.drop_connect import check_inference
from dropkit.nn._base import RandomMixin
from dropkit.ops.checks import (
    MAX_EXTENT,
    check_choice,
    check_conv2d_args,
    check_flag,
    check_int,
    check_pair,
    check_probability,
)

__all__ = ["DropConnectConv2d", "DropConnectLinear"]


class _DropConnectMixin(RandomMixin):
    draws_once_per_batch = property(lambda self: not self.per_sample)  # see dropkit.mc

    def _init_drop_connect(self, p, mode, inference, samples, activation, generator, seed):
        name = type(self).__name__
        self.p = check_probability(p, op=name)
        self.mode = check_mode(mode, name)
        samples = check_inference(inference, samples, activation, name)
        self.inference, self.samples, self.activation = inference, samples, activation
        self._init_random(generator, seed)

    def _drop_repr(self) -> str:
        text = f", p={self.p}"
        text += "" if self.mode == "inverted" else f", mode={self.mode!r}"
        if self.inference != "weight_scaling":
            text += f", inference={self.inference!r}, samples={self.samples}"
        if self.activation is not None:
            name = getattr(self.activation, "__name__", type(self.activation).__name__)
            text += f", activation={name}"
        return text + self._seed_repr()


class DropConnectLinear(_DropConnectMixin, nn.Linear):
    """``nn.Linear`` whose weights are dropped in training: ``a((W * M * s) v + b)``.

    Wan et al. 2013, "Regularization of Neural Networks using DropConnect" (ICML); the formula,
    stream words, inference rules and costs are those of
    :func:`dropkit.functional.drop_connect_linear`. ``nn.Linear``'s arguments come first, in
    torch's order, so the layer is a drop-in replacement; its parameters are ``weight`` and
    ``bias`` exactly as in ``nn.Linear`` (same ``state_dict`` keys and initialisation).

    Args:
        in_features, out_features, bias, device, dtype: as ``torch.nn.Linear``.
        p: probability of dropping each weight, in [0, 1].
        per_sample: one mask per sample (dim 0) instead of one per batch.
        mode: ``"inverted"`` (train ``W M / (1-p)``, eval ``W``) or ``"classic"`` (train
            ``W M``, eval ``(1-p) W``).
        inference: ``"weight_scaling"`` (mean network) or ``"moment_matching"`` (Wan et al.'s
            Gaussian sampling; needs ``activation``).
        samples: Gaussian draws per unit for moment matching.
        activation: applied after the layer (e.g. ``torch.relu``), in training and at inference;
            moment matching averages it over the draws.
        generator, seed: per-layer randomness.

    ``DropConnectLinear.from_linear(layer, p, **kwargs)`` wraps an existing ``nn.Linear``, sharing
    its weight and bias parameters. Shape: ``(*, in_features)`` -> ``(*, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p: float = 0.5,
        *,
        per_sample: bool = False,
        mode: str = "inverted",
        inference: str = "weight_scaling",
        samples: int = 1000,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        op = type(self).__name__
        check_int(in_features, "in_features", op=op, minimum=0, maximum=MAX_EXTENT)
        check_int(out_features, "out_features", op=op, minimum=0, maximum=MAX_EXTENT)
        check_flag(bias, "bias", op=op)
        check_flag(per_sample, "per_sample", op=op)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_drop_connect(p, mode, inference, samples, activation, generator, seed)
        self.per_sample = bool(per_sample)

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float = 0.5, **kwargs) -> DropConnectLinear:
        """Wrap an existing ``nn.Linear``: the same weight and bias parameters are used."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        # Built on the meta device: no throw-away initialisation, the parameters are replaced.
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, p,
                    device="meta", dtype=linear.weight.dtype, **kwargs)  # fmt: skip
        layer.weight = linear.weight
        layer.bias = linear.bias
        return layer

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.drop_connect_linear(
            input, self.weight, self.bias, self.p, self.training, per_sample=self.per_sample,
            mode=self.mode, inference=self.inference, samples=self.samples,
            activation=self.activation, generator=self.generator, seed=self.seed,
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = ", per_sample=True" if self.per_sample else ""
        return super().extra_repr() + self._drop_repr() + extra


class DropConnectConv2d(_DropConnectMixin, nn.Conv2d):
    """``nn.Conv2d`` whose kernel is dropped in training: ``a(conv2d(v, W * M * s, b))``.

    Wan et al. 2013 applied to a convolution's kernel, one mask per batch; see
    :func:`dropkit.functional.drop_connect_conv2d`. ``nn.Conv2d``'s arguments come first, in
    torch's order (``padding_mode`` included: non-zero padding is applied to the input first, as
    ``nn.Conv2d`` does); the DropConnect arguments are those of :class:`DropConnectLinear`.

    ``DropConnectConv2d.from_conv2d(conv, p, **kwargs)`` keeps the weight and bias parameters,
    kernel size, stride, padding, dilation, groups and padding mode of ``conv``: with ``p = 0``,
    or in eval mode with weight scaling, its output equals ``conv``'s bit for bit.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        p: float = 0.5,
        *,
        per_sample: bool = False,
        mode: str = "inverted",
        inference: str = "weight_scaling",
        samples: int = 1000,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        op = type(self).__name__
        check_int(in_channels, "in_channels", op=op, minimum=1, maximum=MAX_EXTENT)
        check_int(out_channels, "out_channels", op=op, minimum=1, maximum=MAX_EXTENT)
        check_pair(kernel_size, "kernel_size", op=op, minimum=1)
        groups = check_conv2d_args(stride, padding, dilation, groups, op=op)[3]
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{op}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                f"divisible by groups, got groups={groups}"
            )
        check_flag(bias, "bias", op=op)
        check_choice(padding_mode, "padding_mode", ("zeros", "reflect", "replicate", "circular"),
                     op=op)  # fmt: skip
        check_flag(per_sample, "per_sample", op=op)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device=device, dtype=dtype)  # fmt: skip
        self._init_drop_connect(p, mode, inference, samples, activation, generator, seed)
        self.per_sample = bool(per_sample)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, p: float = 0.5, **kwargs) -> DropConnectConv2d:
        """Wrap an existing ``nn.Conv2d``, keeping every hyper-parameter and its parameters."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv2d expects an nn.Conv2d, got {type(conv).__name__}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                    conv.padding_mode, p, device="meta", dtype=conv.weight.dtype,
                    **kwargs)  # fmt: skip
        layer.weight = conv.weight
        layer.bias = conv.bias
        return layer

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice,
                                      mode=self.padding_mode)  # fmt: skip
            padding = 0
        else:
            padding = self.padding
        return F.drop_connect_conv2d(
            input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
            self.p, self.training, per_sample=self.per_sample, mode=self.mode,
            inference=self.inference,
            samples=self.samples, activation=self.activation, generator=self.generator,
            seed=self.seed,
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = ", per_sample=True" if self.per_sample else ""
        return super().extra_repr() + self._drop_repr() + extra
