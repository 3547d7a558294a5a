"""``EmbeddingDropout``: an ``nn.Embedding`` that drops whole word types in training."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from dropkit import functional as F
from dropkit.nn._base import RandomMixin
from dropkit.ops.checks import MAX_EXTENT, check_embedding_args, check_int, check_probability

__all__ = ["EmbeddingDropout"]

_EMBEDDING_SIGNATURE = inspect.signature(nn.Embedding.__init__)
_EMBEDDING_DEFAULTS = {
    name: parameter.default for name, parameter in _EMBEDDING_SIGNATURE.parameters.items()
}


class EmbeddingDropout(RandomMixin, nn.Embedding):
    """``nn.Embedding`` with word dropout (:func:`dropkit.functional.embedding_dropout`).

    ``EmbeddingDropout.from_embedding(embedding, p)`` keeps the weight, ``padding_idx``,
    ``max_norm``, ``norm_type``, ``scale_grad_by_freq`` and ``sparse`` of an existing embedding.
    """

    draws_once_per_batch = True  # one word-type mask for the batch; see dropkit.mc

    def __init__(self, num_embeddings: int, embedding_dim: int, *args, p: float = 0.1,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 **kwargs) -> None:  # fmt: skip
        op = "EmbeddingDropout"
        check_int(num_embeddings, "num_embeddings", op=op, minimum=1, maximum=MAX_EXTENT)
        check_int(embedding_dim, "embedding_dim", op=op, minimum=0, maximum=MAX_EXTENT)
        bound = _EMBEDDING_SIGNATURE.bind(None, num_embeddings, embedding_dim, *args, **kwargs)
        options = {**_EMBEDDING_DEFAULTS, **bound.arguments}
        check_embedding_args(num_embeddings, options["padding_idx"], options["max_norm"],
                             options["norm_type"], options["scale_grad_by_freq"],
                             options["sparse"], op=op)  # fmt: skip
        super().__init__(num_embeddings, embedding_dim, *args, **kwargs)
        self.p = check_probability(p, op="EmbeddingDropout")
        self._init_random(generator, seed)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, p: float = 0.1, **kwargs) -> EmbeddingDropout:
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(
                f"from_embedding expects an nn.Embedding, got {type(embedding).__name__}"
            )
        layer = cls(embedding.num_embeddings, embedding.embedding_dim, p=p,
                    padding_idx=embedding.padding_idx, max_norm=embedding.max_norm,
                    norm_type=embedding.norm_type, scale_grad_by_freq=embedding.scale_grad_by_freq,
                    sparse=embedding.sparse, _weight=embedding.weight, **kwargs)  # fmt: skip
        layer.weight = embedding.weight
        return layer

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.embedding_dropout(
            input, self.weight, self.p, self.training, padding_idx=self.padding_idx,
            max_norm=self.max_norm, norm_type=self.norm_type,
            scale_grad_by_freq=self.scale_grad_by_freq, sparse=self.sparse,
            generator=self.generator, seed=self.seed,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}{self._seed_repr()}"
