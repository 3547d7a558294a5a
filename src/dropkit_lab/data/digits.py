"""The embedded default dataset: scikit-learn's bundled 8x8 handwritten digits (no download).

1,797 images of 8x8 pixels with 17 grey levels (UCI "Optical Recognition of Handwritten Digits",
Alpaydin and Kaynak 1998, as shipped inside scikit-learn). dropkit splits them once, with a fixed
permutation, into 1,297 training and 500 test images, and scales pixels to [0, 1] (divides by 16).
"""

from __future__ import annotations

import numpy as np
import torch

from dropkit_lab.data.dataset import Dataset

__all__ = ["DIGITS_TEST_SIZE", "load_digits"]

DIGITS_TEST_SIZE = 500


def load_digits() -> Dataset:
    """The digits split (needs scikit-learn, from ``pip install 'dropkit[experiments]'``)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    # RandomState's permutation is frozen across numpy versions, so the split never changes.
    order = np.random.RandomState(0).permutation(len(y))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return Dataset(
        name="digits",
        train_x=torch.from_numpy(x[train].copy()),
        train_y=torch.from_numpy(y[train].copy()),
        test_x=torch.from_numpy(x[test].copy()),
        test_y=torch.from_numpy(y[test].copy()),
        image_shape=(1, 8, 8),
        num_classes=10,
        source="sklearn.datasets.load_digits (bundled)",
        classes=tuple(str(i) for i in range(10)),
    )
