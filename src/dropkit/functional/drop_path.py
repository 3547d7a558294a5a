"""Drop-path / stochastic depth (Huang et al. 2016): drop a whole residual branch per sample."""

from __future__ import annotations

import torch

from dropkit import _state, rng
from dropkit.ops import overridable, resolve_stream
from dropkit.ops.checks import (
    check_flag,
    check_floating,
    check_int,
    check_probability,
    check_stream_args,
    check_tensor,
    check_training,
)

__all__ = ["check_drop_path_args", "drop_path", "linear_decay_rates", "stochastic_depth"]

MODES = ("batch", "row")
#: The most layers :func:`linear_decay_rates` makes rates for (it returns a list of that length).
MAX_LAYERS = 2**20
_NO_MODE = object()


def check_drop_path_args(p, name: str, op: str, mode=_NO_MODE) -> float:
    """The drop probability of :func:`drop_path` / :func:`stochastic_depth` (and, when passed,
    its ``mode``, ``None`` included): named ``drop_prob`` (timm's name) or "drop probability"
    (torchvision's message)."""
    p = check_probability(p, name, op=op, what="drop probability" if name == "p" else name)
    if mode is not _NO_MODE and not (isinstance(mode, str) and mode in MODES):
        # torchvision's wording and type (a ValueError for any other value, None included)
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode!r}")
    return p


def _branch_drop(x, p, per_sample, scale, generator, seed, offset, op):
    check_floating(x, op)
    if per_sample and x.dim() == 0:
        raise ValueError(
            f"{op}: input must have a batch dimension (N, ...) to drop paths per sample, got a "
            "0-d tensor"
        )
    shape = [x.shape[0] if per_sample else 1] + [1] * (x.dim() - 1)
    seed_t, offset = resolve_stream(generator, seed, offset, shape[0] if shape else 1)
    return torch.ops.dropkit.keep(x, seed_t, offset, rng.keep_threshold(p), scale, shape)


@overridable
def stochastic_depth(
    input: torch.Tensor,
    p: float,
    mode: str,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Randomly drop the residual branch ``input`` (``torchvision.ops.stochastic_depth``).

    Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016:
    :math:`y = x\,b / (1-p)` with :math:`b \sim \mathrm{Bernoulli}(1-p)` drawn per sample
    (``mode="row"``; sample ``n`` reads stream word ``n + offset``) or once for the whole batch
    (``mode="batch"``; word ``offset``). ``p = 1`` gives zeros. Evaluation is the identity
    (the paper's test-time rule, expressed in inverted form).

    Shape: ``(N, ...)``; output the same, in the input's layout.
    """
    check_tensor(input, "stochastic_depth")
    p = check_drop_path_args(p, "p", "stochastic_depth", mode)
    check_training(training, "stochastic_depth")
    if input.dim() == 0 and p > 0.0 and _state.is_stochastic(training):
        raise ValueError(
            "stochastic_depth: input must have a batch dimension (N, ...), got a 0-d tensor"
        )
    check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or p == 0.0 or input.numel() == 0:
        return input
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return _branch_drop(input, p, mode == "row", scale, generator, seed, offset,
                        "stochastic_depth")  # fmt: skip


@overridable
def drop_path(
    x: torch.Tensor,
    drop_prob: float = 0.0,
    training: bool = False,
    scale_by_keep: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Per-sample drop-path with timm's signature and defaults (``timm.layers.drop_path``).

    Huang et al. 2016 (see :func:`stochastic_depth`): :math:`y_n = x_n b_n / (1 - p)` with
    :math:`b_n \sim \mathrm{Bernoulli}(1-p)` per sample; the same draws as
    ``stochastic_depth(x, drop_prob, "row")`` (sample ``n`` reads stream word ``n + offset``).
    With ``scale_by_keep=False`` the survivors are not rescaled (:math:`y_n = x_n b_n`) and
    evaluation is still the identity, as in timm. Differences from timm: ``drop_prob`` outside
    [0, 1] raises instead of failing inside ``bernoulli_``; a 0-d input raises a ``ValueError``
    (timm fails with an ``IndexError``); nothing but the seed is kept for backward. Shape:
    ``(N, ...)``; output the same, in the input's layout.
    """
    check_tensor(x, "drop_path", "x")
    p = check_drop_path_args(drop_prob, "drop_prob", "drop_path")
    check_training(training, "drop_path")
    check_flag(scale_by_keep, "scale_by_keep", op="drop_path")
    check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or p == 0.0 or x.numel() == 0:
        return x
    keep = 1.0 - p
    scale = 1.0 / keep if (scale_by_keep and keep > 0.0) else (0.0 if keep == 0.0 else 1.0)
    return _branch_drop(x, p, True, scale, generator, seed, offset, "drop_path")


def linear_decay_rates(p_last: float, num_layers: int) -> list[float]:
    r"""The linear decay rule of Huang et al. 2016: ``p_l = l / L * p_L`` for ``l = 1 .. L``.

    The paper writes it for survival probabilities, :math:`p_l = 1 - \frac{l}{L}(1 - p_L)`; in
    drop probabilities this is ``l / L * p_last`` (the paper uses ``p_last = 0.5``). Returns the
    ``L`` drop rates of residual blocks ``1 .. L`` (input side first); ``num_layers`` is an
    integer in ``[1, 2**20]`` (it sizes the list).
    """
    p_last = check_probability(p_last, "p_last", op="linear_decay_rates", what="p_last")
    num_layers = check_int(num_layers, "num_layers", op="linear_decay_rates", minimum=1,
                           maximum=MAX_LAYERS)  # fmt: skip
    return [layer / num_layers * p_last for layer in range(1, num_layers + 1)]
