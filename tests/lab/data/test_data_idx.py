import gzip

import numpy as np
import pytest

from dropkit_lab.data import IdxFormatError, read_idx
from dropkit_lab.data.idx import parse_idx


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_raw_and_gzip(tmp_path, compress, idx_bytes):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(array)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_gzip_detected_by_content_not_name(tmp_path, idx_bytes):
    array = np.arange(5, dtype=np.uint8)
    path = tmp_path / "labels"  # no .gz suffix
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


def test_big_endian_int32_type():
    data = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + np.array([1, -2, 3], ">i4").tobytes()
    np.testing.assert_array_equal(parse_idx(data), [1, -2, 3])


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x01\x00\x08\x01", "bad magic"),
        (b"\x00\x00\x07\x01", "unknown IDX element type"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated IDX header"),
        (bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc", "size mismatch"),
    ],
)
def test_malformed_idx_rejected(data, match):
    with pytest.raises(IdxFormatError, match=match):
        parse_idx(data, "x")


def test_damaged_gzip_named(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x00" * 1000)[:-20])
    with pytest.raises(IdxFormatError, match="bad.gz"):
        read_idx(path)
