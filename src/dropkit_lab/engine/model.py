"""The multilayer perceptron of the dropout papers, built from a small frozen config.

Layout of a net with hidden widths ``(h1, ..., hL)`` (Hinton et al. 2012; Srivastava et al. 2014):

    [input noise] -> Linear -> [BatchNorm] -> act -> [hidden noise] -> ... -> Linear -> logits

``method`` picks the noise: ``"none"``, ``"dropout"`` (:class:`dropkit.nn.Dropout`, inverted or
classic), ``"gaussian"`` (:class:`dropkit.nn.GaussianDropout`, multiplicative N(1, p/(1-p)) noise)
or ``"dropconnect"`` (hidden layers become :class:`dropkit.nn.DropConnectLinear`, which drops
weights with probability ``hidden_p`` — one mask per mini-batch, or per example with
``dropconnect_per_sample`` as in Wan et al. 2013 — and applies the activation itself, so
moment-matching inference can sample through it; input dropout stays unit dropout).
``hidden_noise_on="last"`` keeps the noise on the last hidden layer only: with BatchNorm that is
Li et al.'s (2019) remedy of no dropout before any BN layer. All weights start from
N(0, init_std^2), biases at 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["METHODS", "MLP", "MLPConfig", "build_mlp"]

METHODS = ("none", "dropout", "gaussian", "dropconnect")
ACTIVATIONS = ("relu", "logistic")


@dataclass(frozen=True)
class MLPConfig:
    in_features: int
    widths: tuple[int, ...]
    num_classes: int
    activation: str = "relu"
    method: str = "none"
    input_p: float = 0.0
    hidden_p: float = 0.0
    mode: str = "inverted"
    batchnorm: bool = False
    hidden_noise_on: str = "all"
    init_std: float = 0.01
    dropconnect_inference: str = "weight_scaling"
    dropconnect_samples: int = 1000
    dropconnect_per_sample: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.hidden_noise_on not in ("all", "last"):
            raise ValueError(
                f"hidden_noise_on must be 'all' or 'last', got {self.hidden_noise_on!r}"
            )
        for name in ("input_p", "hidden_p"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints: {self.widths}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out


def _noise(method: str, p: float, mode: str) -> nn.Module | None:
    if p == 0.0 or method == "none":
        return None
    if method in ("dropout", "dropconnect"):
        from dropkit.nn import Dropout

        return Dropout(p, mode=mode)
    from dropkit import nn as dnn

    if not hasattr(dnn, "GaussianDropout"):
        raise ImportError("method='gaussian' needs dropkit.nn.GaussianDropout (not available)")
    return dnn.GaussianDropout(p)


def _activation(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.Sigmoid()


class MLP(nn.Module):
    """A feed-forward classifier; ``forward`` returns logits, ``hidden`` the hidden activations."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        # DropConnect drops weights of the hidden layers; its input dropout is unit dropout.
        input_method = "dropout" if config.method == "dropconnect" else config.method
        noise = _noise(input_method, config.input_p, config.mode)
        if noise is not None:
            layers.append(noise)
        self.hidden_ends: list[int] = []  # index in `layers` after which a hidden layer is done
        fan_in = config.in_features
        for i, width in enumerate(config.widths):
            last = i == len(config.widths) - 1
            noisy = config.hidden_noise_on == "all" or last
            if config.method == "dropconnect" and noisy and config.hidden_p > 0:
                layers.append(self._dropconnect(fan_in, width))
            else:
                layers.append(nn.Linear(fan_in, width))
                if config.batchnorm:
                    layers.append(nn.BatchNorm1d(width))
                layers.append(_activation(config.activation))
            self.hidden_ends.append(len(layers) - 1)
            if config.method != "dropconnect" and noisy:
                noise = _noise(config.method, config.hidden_p, config.mode)
                if noise is not None:
                    layers.append(noise)
            fan_in = width
        layers.append(nn.Linear(fan_in, config.num_classes))
        self.layers = nn.Sequential(*layers)

    def _dropconnect(self, fan_in: int, width: int) -> nn.Module:
        from dropkit import nn as dnn

        if not hasattr(dnn, "DropConnectLinear"):
            raise ImportError(
                "method='dropconnect' needs dropkit.nn.DropConnectLinear (not available)"
            )
        if self.config.batchnorm:
            raise ValueError("batchnorm is not supported with method='dropconnect'")
        act = torch.relu if self.config.activation == "relu" else torch.sigmoid
        return dnn.DropConnectLinear(
            fan_in,
            width,
            p=self.config.hidden_p,
            inference=self.config.dropconnect_inference,
            samples=self.config.dropconnect_samples,
            per_sample=self.config.dropconnect_per_sample,
            activation=act,
        )

    def reset_parameters(self, generator: torch.Generator) -> None:
        """N(0, init_std^2) weights and zero biases for every linear map (BatchNorm: 1 and 0)."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.reset_parameters()
                elif isinstance(getattr(module, "weight", None), nn.Parameter):
                    module.weight.normal_(0.0, self.config.init_std, generator=generator)
                    if getattr(module, "bias", None) is not None:
                        module.bias.zero_()

    def hidden_weights(self) -> list[torch.Tensor]:
        """The weight matrices (out, in) that feed hidden units: the ones max-norm constrains."""
        return [self._layer_weight(index) for index in self.hidden_ends]

    def _layer_weight(self, end: int) -> torch.Tensor:
        for module in reversed(list(self.layers[: end + 1])):
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and weight.dim() == 2:
                return weight
        raise RuntimeError("no weight found")  # pragma: no cover

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each hidden layer's nonlinearity (before any hidden noise)."""
        out = []
        ends = set(self.hidden_ends)
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in ends:
                out.append(x)
        return out


def build_mlp(config: MLPConfig, seed: int) -> MLP:
    """The MLP of ``config`` with weights drawn from a generator seeded with ``seed``."""
    # nn.Linear's constructor draws a default init from the global generator; keep that untouched.
    with torch.random.fork_rng(devices=[]):
        model = MLP(config)
    model.reset_parameters(torch.Generator().manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF))
    return model
