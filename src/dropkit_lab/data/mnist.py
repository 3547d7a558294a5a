"""MNIST and Fashion-MNIST from their IDX files: find, verify, download, decode.

Files are looked for in the data directory (``data_dir`` argument, else the ``DROPKIT_DATA``
environment variable, else ``~/.cache/dropkit``), in the directory itself and in the sub-folders
``<name>/`` and torchvision's ``<Name>/raw/``, each file either gzip-compressed (``*.gz``) or raw.
A file is accepted when the MD5 of the ``.gz`` matches the published sum, or else when the MD5 of
its decompressed (or raw) content matches the published content's: repackaged archives (Debian's
``dataset-fashion-mnist`` differs from the official ``.gz`` files only in the gzip header) are
accepted, damaged ones are rejected with the file named. Missing files are downloaded into
``<data_dir>/<name>/`` (see :mod:`dropkit_lab.data.download`); when that fails the error says which
files to place where.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dropkit_lab.data.dataset import Dataset
from dropkit_lab.data.download import DownloadError, download, md5_bytes, md5_file
from dropkit_lab.data.idx import IdxFormatError, is_gzip, parse_idx, read_payload

__all__ = [
    "FASHION_MNIST",
    "IDX_DATASETS",
    "MNIST",
    "CorruptFileError",
    "DatasetNotFoundError",
    "IdxDatasetSpec",
    "IdxFile",
    "default_data_dir",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
    "locate_files",
]

ROLES = ("train_images", "train_labels", "test_images", "test_labels")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are missing and could not be downloaded."""


class CorruptFileError(ValueError):
    """A dataset file exists but fails its checksum or does not decode."""


@dataclass(frozen=True)
class IdxFile:
    """One published file: its name without ``.gz``, the MD5 of the ``.gz``, of its content."""

    name: str
    gz_md5: str
    content_md5: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class IdxDatasetSpec:
    name: str
    title: str
    files: dict[str, IdxFile]
    mirrors: tuple[str, ...]
    subdirs: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))


MNIST = IdxDatasetSpec(
    name="mnist",
    title="MNIST (LeCun, Cortes and Burges)",
    files={
        "train_images": IdxFile(
            "train-images-idx3-ubyte",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "6bbc9ace898e44ae57da46a324031adb",
            (60000, 28, 28),
        ),
        "train_labels": IdxFile(
            "train-labels-idx1-ubyte",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "a25bea736e30d166cdddb491f175f624",
            (60000,),
        ),
        "test_images": IdxFile(
            "t10k-images-idx3-ubyte",
            "9fb629c4189551a2d022fa330f9573f3",
            "2646ac647ad5339dbf082846283269ea",
            (10000, 28, 28),
        ),
        "test_labels": IdxFile(
            "t10k-labels-idx1-ubyte",
            "ec29112dd5afa0611ce80d1b7f02629c",
            "27ae3e4e09519cfbb04c329615203637",
            (10000,),
        ),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ),
    subdirs=("", "mnist", "MNIST/raw"),
)

FASHION_MNIST = IdxDatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (Xiao, Rasul and Vollgraf 2017)",
    files={
        "train_images": IdxFile(
            "train-images-idx3-ubyte",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            (60000, 28, 28),
        ),
        "train_labels": IdxFile(
            "train-labels-idx1-ubyte",
            "25c81989df183df01b3e8a0aad5dffbe",
            "9018921c3c673c538a1fc5bad174d6f9",
            (60000,),
        ),
        "test_images": IdxFile(
            "t10k-images-idx3-ubyte",
            "bef4ecab320f06d8554ea6380940ec79",
            "8181f5470baa50b63fa0f6fddb340f0a",
            (10000, 28, 28),
        ),
        "test_labels": IdxFile(
            "t10k-labels-idx1-ubyte",
            "bb300cfdad3c16e7a12a480ee83cd310",
            "15d484375f8d13e6eb1aabb0c3f46965",
            (10000,),
        ),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    subdirs=("", "fashion-mnist", "FashionMNIST/raw"),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

IDX_DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else ``$DROPKIT_DATA``, else ``~/.cache/dropkit``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("DROPKIT_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/dropkit").expanduser()


def _search_dirs(spec: IdxDatasetSpec, root: Path) -> list[Path]:
    dirs = [root / sub if sub else root for sub in spec.subdirs]
    return dirs + [Path(d) for d in spec.system_dirs]


def locate_files(spec: IdxDatasetSpec, root: Path) -> dict[str, Path | None]:
    """For each role, the first existing candidate file (``name.gz`` before ``name``) or None."""
    found: dict[str, Path | None] = {}
    for role, f in spec.files.items():
        found[role] = None
        for directory in _search_dirs(spec, root):
            for candidate in (directory / f"{f.name}.gz", directory / f.name):
                if candidate.is_file():
                    found[role] = candidate
                    break
            if found[role] is not None:
                break
    return found


def _verified_array(path: Path, f: IdxFile) -> np.ndarray:
    """Decode ``path`` after checking it against the published sums; CorruptFileError otherwise."""
    gz_ok = is_gzip(path) and md5_file(path) == f.gz_md5
    try:
        payload = read_payload(path)
    except IdxFormatError as exc:
        raise CorruptFileError(f"corrupted dataset file {path}: {exc}; delete it") from exc
    if not gz_ok:
        got = md5_bytes(payload)
        if got != f.content_md5:
            raise CorruptFileError(
                f"corrupted dataset file {path}: content md5 {got}, expected {f.content_md5} "
                f"(or a .gz with md5 {f.gz_md5}); delete or replace it"
            )
    array = parse_idx(payload, str(path))
    if array.shape != f.shape:  # pragma: no cover - implied by the checksum
        raise CorruptFileError(f"{path}: shape {array.shape}, expected {f.shape}")
    return array


def _missing_message(
    spec: IdxDatasetSpec, root: Path, missing: list[str], reason: str, default: bool
) -> str:
    target = root / spec.name
    where = " (the default data folder)" if default else ""
    files = "file" if len(missing) == 1 else "files"
    lines = [
        f"{spec.title}: {len(missing)} {files} not found and could not be downloaded ({reason}).",
        f"Place these files (gzip or uncompressed) in {target}{where} (or in {root}):",
    ]
    for role in missing:
        f = spec.files[role]
        lines.append(f"  {f.name}.gz  (md5 {f.gz_md5})")
    lines.append(
        "or point --data-dir / the DROPKIT_DATA environment variable at the folder that holds them."
    )
    return "\n".join(lines)


def load_idx_dataset(
    spec: IdxDatasetSpec | str,
    data_dir: str | os.PathLike | None = None,
    *,
    download_missing: bool = True,
    mirrors: tuple[str, ...] | None = None,
    timeout: float = 30.0,
) -> Dataset:
    """Load an IDX dataset (``"mnist"``, ``"fashion-mnist"`` or a spec); see the module docstring.

    ``mirrors`` overrides the spec's base URLs (each ends with ``/``; ``file://`` works). Images
    become float32 in [0, 1] flattened to 784 features; labels int64.
    """
    if isinstance(spec, str):
        if spec not in IDX_DATASETS:
            raise ValueError(f"unknown IDX dataset {spec!r}; known: {sorted(IDX_DATASETS)}")
        spec = IDX_DATASETS[spec]
    root = default_data_dir(data_dir)
    default = data_dir is None and not os.environ.get("DROPKIT_DATA")
    found = locate_files(spec, root)
    missing = [role for role, path in found.items() if path is None]
    if missing:
        if not download_missing:
            raise DatasetNotFoundError(
                _missing_message(spec, root, missing, "downloading disabled", default)
            )
        # Folders this call makes; a failed download removes those it left empty.
        made = [d for d in (root / spec.name, *(root / spec.name).parents) if not d.exists()]
        for role in missing:
            f = spec.files[role]
            dest = root / spec.name / f"{f.name}.gz"
            errors = []
            for base in mirrors if mirrors is not None else spec.mirrors:
                try:
                    download(base + f.name + ".gz", dest, f.gz_md5, timeout=timeout)
                    break
                except DownloadError as exc:
                    errors.append(str(exc))
            else:
                for folder in made:  # deepest first
                    try:
                        folder.rmdir()
                    except FileNotFoundError:
                        continue
                    except OSError:  # not empty (a resumable .part) or not ours: keep it
                        break
                raise DatasetNotFoundError(
                    _missing_message(spec, root, missing, "; ".join(errors) or "no mirror", default)
                )
            found[role] = dest
    arrays = {role: _verified_array(found[role], spec.files[role]) for role in ROLES}

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)

    return Dataset(
        name=spec.name,
        train_x=images(arrays["train_images"]),
        train_y=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_x=images(arrays["test_images"]),
        test_y=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        image_shape=(1, 28, 28),
        num_classes=10,
        source=str(Path(found["train_images"]).parent),
        classes=spec.classes,
    )


def load_mnist(data_dir: str | os.PathLike | None = None, **kwargs) -> Dataset:
    """MNIST (60,000 train / 10,000 test); see :func:`load_idx_dataset`."""
    return load_idx_dataset(MNIST, data_dir, **kwargs)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, **kwargs) -> Dataset:
    """Fashion-MNIST (60,000 train / 10,000 test); see :func:`load_idx_dataset`."""
    return load_idx_dataset(FASHION_MNIST, data_dir, **kwargs)
