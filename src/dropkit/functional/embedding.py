"""Embedding (word) dropout (Gal & Ghahramani 2016; AWD-LSTM, Merity et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dropkit import _state, rng
from dropkit.ops import EMBEDDING, overridable, resolve_stream
from dropkit.ops.checks import (
    check_embedding_args,
    check_ids,
    check_probability,
    check_stream_args,
    check_tensor,
    check_training,
)

__all__ = ["embedding_dropout"]


@overridable
def embedding_dropout(
    input: torch.Tensor,
    weight: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    *,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Look up ``input`` in ``weight`` with whole word types dropped.

    Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
    Networks", NeurIPS 2016, section 4.2; as ``embedded_dropout`` in AWD-LSTM (Merity, Keskar,
    Socher, "Regularizing and Optimizing LSTM Language Models", ICLR 2018): row ``v`` of the
    embedding matrix is kept with probability ``1-p`` and scaled by ``1/(1-p)``, so every
    occurrence of a dropped word in the batch is zeroed. The keep decision of word type ``v`` is its
    stream word at ``v + offset`` — independent of which other ids occur — and only the ids present
    are evaluated: no ``V x D`` masked weight is built (AWD-LSTM builds one). Backward regenerates
    the keep decisions from the seed and the ids (which the lookup saves anyway); no mask is kept.
    Formula: :math:`y_{\dots,d} = W_{i,d}\, m_i / (1-p)`, :math:`i` = ``input[...]``,
    :math:`m_v \sim \mathrm{Bernoulli}(1-p)`. Other arguments as
    ``torch.nn.functional.embedding``. Evaluation is a plain lookup (AWD-LSTM's eval as well).

    Monte-Carlo note: the mask's elements are word types, not batch rows, so a batch replicated
    along dim 0 shares one mask; :func:`dropkit.mc.mc_predict` loops over samples for this layer.

    Shape: ``input (*)`` integer ids, ``weight (V, D)``, output ``(*, D)``.
    """
    check_tensor(input, "embedding_dropout")
    check_tensor(weight, "embedding_dropout", "weight", 2)
    if not weight.dtype.is_floating_point:
        raise TypeError(f"embedding_dropout: weight must be a floating tensor, got {weight.dtype}")
    if weight.dim() != 2:
        raise ValueError(
            f"embedding_dropout: weight must be 2D (num_embeddings, embedding_dim), "
            f"got shape {tuple(weight.shape)}"
        )
    if input.dtype.is_floating_point or input.dtype == torch.bool or input.dtype.is_complex:
        raise TypeError(f"embedding_dropout: input must hold integer ids, got {input.dtype}")
    p = check_probability(p, op="embedding_dropout")
    check_training(training, "embedding_dropout")
    padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse = check_embedding_args(
        weight.shape[0], padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
        op="embedding_dropout",
    )  # fmt: skip
    check_ids(input, weight.shape[0], "embedding_dropout")
    check_stream_args(generator, seed, offset)
    out = F.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    if not _state.is_stochastic(training) or p == 0.0 or input.numel() == 0:
        return out
    # The mask's elements are the V word types, shared by every replica of a batch (so Monte-Carlo
    # passes over this op loop rather than batch; see dropkit.mc).
    seed_t, offset = resolve_stream(generator, seed, offset, weight.shape[0])
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return EMBEDDING(
        out, seed_t, offset, affine=True, ids=input, threshold=rng.keep_threshold(p), scale=scale
    )
