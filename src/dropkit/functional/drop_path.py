"""Drop-path / stochastic depth (Huang et al. 2016): drop a whole residual branch per sample."""

from __future__ import annotations

import torch

from dropkit import _state, rng
from dropkit.functional._checks import check_floating, check_offset, resolve_stream
from dropkit.kernels import ops

__all__ = ["drop_path", "linear_decay_rates", "stochastic_depth"]


def _branch_mask_apply(input, p, per_sample, scale, generator, seed, offset):
    shape = [input.shape[0] if per_sample else 1] + [1] * (input.dim() - 1)
    mask_numel = shape[0]
    seed_t, offset = resolve_stream(input, generator, seed, offset, mask_numel)
    return ops.broadcast_keep_mask(input, seed_t, offset, rng.keep_threshold(p), scale, shape)


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

    Shape: ``(N, ...)``; output the same.
    """
    check_floating(input, "stochastic_depth")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ("batch", "row"):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    check_offset(offset)
    if not _state.is_stochastic(training) or p == 0.0 or input.numel() == 0:
        return input
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return _branch_mask_apply(input, p, mode == "row", scale, generator, seed, offset)


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
    [0, 1] raises instead of failing inside ``bernoulli_``; nothing but the seed is kept for
    backward. Shape: ``(N, ...)``; output the same.
    """
    check_floating(x, "drop_path")
    if (
        isinstance(drop_prob, bool)
        or not isinstance(drop_prob, (int, float))
        or not (0.0 <= drop_prob <= 1.0)
    ):
        raise ValueError(f"drop_prob has to be between 0 and 1, but got {drop_prob}")
    check_offset(offset)
    if not _state.is_stochastic(training) or drop_prob == 0.0 or x.numel() == 0:
        return x
    keep = 1.0 - drop_prob
    scale = 1.0 / keep if (scale_by_keep and keep > 0.0) else (0.0 if keep == 0.0 else 1.0)
    return _branch_mask_apply(x, drop_prob, True, scale, generator, seed, offset)


def linear_decay_rates(p_last: float, num_layers: int) -> list[float]:
    r"""The linear decay rule of Huang et al. 2016: ``p_l = l / L * p_L`` for ``l = 1 .. L``.

    The paper writes it for survival probabilities, :math:`p_l = 1 - \frac{l}{L}(1 - p_L)`; in
    drop probabilities this is ``l / L * p_last`` (the paper uses ``p_last = 0.5``). Returns the
    ``L`` drop rates of residual blocks ``1 .. L`` (input side first).
    """
    if isinstance(p_last, bool) or not isinstance(p_last, (int, float)) or not 0 <= p_last <= 1:
        raise ValueError(f"p_last must be in [0, 1], got {p_last!r}")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be an integer >= 1, got {num_layers!r}")
    return [layer / num_layers * p_last for layer in range(1, num_layers + 1)]
