import gzip
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from dropkit_lab.data import (
    CorruptFileError,
    DatasetNotFoundError,
    load_dataset,
    load_digits,
    load_idx_dataset,
)
from dropkit_lab.data.mnist import FASHION_MNIST, default_data_dir

DEBIAN_FASHION = Path(FASHION_MNIST.system_dirs[0])


def _check_tiny(ds, arrays):
    assert ds.train_x.shape == (6, 784) and ds.train_x.dtype == torch.float32
    np.testing.assert_allclose(
        ds.train_x.numpy(), arrays["train_images"].reshape(6, -1) / 255.0, rtol=1e-6
    )
    assert ds.test_y.tolist() == arrays["test_labels"].tolist()
    assert ds.train_y.dtype == torch.int64


def test_download_into_data_dir_then_load_offline(tiny_idx, tmp_path):
    spec, arrays, _ = tiny_idx
    root = tmp_path / "data"
    _check_tiny(load_idx_dataset(spec, root), arrays)
    assert sorted(p.name for p in (root / "tiny").iterdir()) == sorted(
        f"{f.name}.gz" for f in spec.files.values()
    )
    # Second load reads the verified files and never touches the (now unreachable) mirror.
    _check_tiny(load_idx_dataset(spec, root, mirrors=("http://127.0.0.1:9/",)), arrays)


def test_raw_files_and_repackaged_gzip_accepted(tiny_idx, tmp_path):
    spec, arrays, src = tiny_idx
    root = tmp_path / "data"
    root.mkdir()
    for i, f in enumerate(spec.files.values()):
        raw = gzip.decompress((src / f"{f.name}.gz").read_bytes())
        if i % 2:
            (root / f.name).write_bytes(raw)  # uncompressed
        else:  # another gzip header (as Debian's packages have): .gz md5 differs, content same
            (root / f"{f.name}.gz").write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))
    _check_tiny(load_idx_dataset(spec, root, download_missing=False), arrays)


def test_offline_message_names_files_and_directory(tiny_idx, tmp_path):
    spec, _, _ = tiny_idx
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset(spec, root, mirrors=(f"http://127.0.0.1:{port}/",), timeout=5)
    text = str(info.value)
    assert str(root / "tiny") in text and "cannot connect" in text
    for f in spec.files.values():
        assert f"{f.name}.gz" in text and f.gz_md5 in text
    leftovers = list(root.rglob("*")) if root.exists() else []
    assert [p for p in leftovers if p.is_file()] == []  # no partial file left behind


def test_download_disabled_message(tiny_idx, tmp_path):
    spec, _, _ = tiny_idx
    with pytest.raises(DatasetNotFoundError, match="downloading disabled"):
        load_idx_dataset(spec, tmp_path, download_missing=False)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_file_detected_and_named(tiny_idx, tmp_path, damage):
    spec, _, src = tiny_idx
    root = tmp_path / "data"
    shutil.copytree(src, root)
    victim = root / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(victim.read_bytes()))
    if damage == "flip":
        raw[100] ^= 0xFF
        victim.write_bytes(gzip.compress(bytes(raw)))
    else:
        victim.write_bytes(victim.read_bytes()[:-30])
    with pytest.raises(CorruptFileError, match=str(victim)):
        load_idx_dataset(spec, root, download_missing=False)


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DROPKIT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert default_data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("DROPKIT_DATA")
    assert default_data_dir() == Path("~/.cache/dropkit").expanduser()


def test_digits_embedded_split():
    ds = load_digits()
    assert ds.train_x.shape == (1297, 64) and ds.test_x.shape == (500, 64)
    assert float(ds.train_x.min()) >= 0.0 and float(ds.train_x.max()) == 1.0
    assert torch.equal(ds.test_y, load_digits().test_y)  # fixed split
    counts = torch.bincount(ds.test_y, minlength=10)
    assert int(counts.min()) > 30  # every class is in the test set


def test_subset_is_fixed_and_independent_of_seed():
    ds = load_digits()
    a, b = ds.subset(100, 50), ds.subset(100, 50)
    assert a.train_x.shape == (100, 64) and a.test_y.shape == (50,)
    assert torch.equal(a.train_x, b.train_x)
    with pytest.raises(ValueError, match="train_size"):
        ds.subset(0)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_dataset("mnist", mnist_dir, download_missing=False)


def test_failed_download_into_the_default_folder_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    from dropkit_lab.data.mnist import MNIST, DatasetNotFoundError, load_idx_dataset

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DROPKIT_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset(MNIST, mirrors=("http://127.0.0.1:9/",), timeout=2)
    default = tmp_path / ".cache" / "dropkit"
    assert f"{default / 'mnist'} (the default data folder)" in str(info.value)
    assert not (tmp_path / ".cache").exists()


def test_real_mnist_facts(mnist):
    assert mnist.train_x.shape == (60000, 784) and mnist.test_x.shape == (10000, 784)
    assert mnist.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(mnist.train_y).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert torch.bincount(mnist.test_y).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert abs(float(mnist.train_x.mean()) - 0.1307) < 1e-4
    assert abs(float(mnist.train_x.std()) - 0.3081) < 1e-4


def test_fashion_mnist_debian_package(tmp_path):
    if not DEBIAN_FASHION.is_dir():
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_FASHION} missing)")
    # Its .gz files differ from the official ones in the gzip header: accepted by content md5.
    ds = load_dataset("fashion-mnist", tmp_path, download_missing=False)
    assert ds.train_x.shape == (60000, 784)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert ds.classes[9] == "Ankle boot"
