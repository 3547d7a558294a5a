"""Datasets for dropkit's experiments: MNIST and Fashion-MNIST (IDX files, verified, downloaded
when absent) and the embedded scikit-learn 8x8 digits that need no download."""

from __future__ import annotations

import os

from dropkit_lab.data.dataset import Dataset
from dropkit_lab.data.digits import load_digits
from dropkit_lab.data.download import DownloadError, download
from dropkit_lab.data.idx import IdxFormatError, read_idx
from dropkit_lab.data.mnist import (
    FASHION_MNIST,
    MNIST,
    CorruptFileError,
    DatasetNotFoundError,
    default_data_dir,
    load_fashion_mnist,
    load_idx_dataset,
    load_mnist,
)

__all__ = [
    "DATASETS",
    "FASHION_MNIST",
    "MNIST",
    "CorruptFileError",
    "Dataset",
    "DatasetNotFoundError",
    "DownloadError",
    "IdxFormatError",
    "default_data_dir",
    "download",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
    "read_idx",
]

DATASETS = ("digits", "mnist", "fashion-mnist")


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, download_missing: bool = True
) -> Dataset:
    """Load ``"digits"`` (embedded), ``"mnist"`` or ``"fashion-mnist"``."""
    if name == "digits":
        return load_digits()
    if name in ("mnist", "fashion-mnist"):
        return load_idx_dataset(name, data_dir, download_missing=download_missing)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
