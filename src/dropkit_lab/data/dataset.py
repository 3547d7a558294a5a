"""The in-memory dataset every experiment trains on: flat float32 images in [0, 1], int64 labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """A train/test split held as tensors.

    ``train_x``/``test_x`` are float32 of shape ``(N, prod(image_shape))`` with values in [0, 1];
    ``train_y``/``test_y`` are int64 class indices of shape ``(N,)``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    image_shape: tuple[int, ...]
    num_classes: int
    source: str = ""
    classes: tuple[str, ...] = field(default=())

    @property
    def in_features(self) -> int:
        return int(self.train_x.shape[1])

    def subset(self, train_size: int | None = None, test_size: int | None = None) -> Dataset:
        """The first ``train_size`` training / ``test_size`` test examples of a fixed shuffle.

        The shuffle (a permutation from a generator seeded with 0) is the same for every call and
        every run seed, so runs that differ only in their seed see the same examples; ``None``
        keeps a split whole (and in its original order).
        """
        train_x, train_y = _first_of_fixed_shuffle(self.train_x, self.train_y, train_size, "train")
        test_x, test_y = _first_of_fixed_shuffle(self.test_x, self.test_y, test_size, "test")
        return Dataset(
            self.name,
            train_x,
            train_y,
            test_x,
            test_y,
            self.image_shape,
            self.num_classes,
            self.source,
            self.classes,
        )


def _first_of_fixed_shuffle(x, y, size, split):
    if size is None or size == len(y):
        return x, y
    if not 1 <= size <= len(y):
        raise ValueError(f"{split}_size must be in [1, {len(y)}], got {size}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:size]
    return x[order].contiguous(), y[order].contiguous()
