"""Reading the IDX format of the MNIST files (LeCun et al.), gzip-compressed or raw.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian uint32
dimension sizes, then the data in row-major order. MNIST uses type ``0x08`` (unsigned byte).
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

__all__ = ["IdxFormatError", "is_gzip", "parse_idx", "read_idx", "read_payload"]

_GZIP_MAGIC = b"\x1f\x8b"
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """A file is not a well-formed IDX file (truncated, wrong magic, wrong size)."""


def is_gzip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def read_payload(path: str | os.PathLike) -> bytes:
    """The IDX bytes of ``path``, decompressed when it is gzip (detected by content, not name).

    Raises :class:`IdxFormatError` naming the file when the gzip stream is damaged or truncated.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{os.fspath(path)}: damaged gzip stream ({exc})") from exc


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX ``data`` into a numpy array (native byte order); ``name`` is used in errors."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError(f"{name}: not an IDX file (bad magic number {data[:4].hex()})")
    type_code, ndim = data[2], data[3]
    if type_code not in _DTYPES:
        raise IdxFormatError(f"{name}: unknown IDX element type 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise IdxFormatError(
            f"{name}: IDX size mismatch: header promises {expected} bytes for shape {shape}, "
            f"file holds {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read the IDX file at ``path`` (gzip or raw) into a numpy array."""
    return parse_idx(read_payload(path), os.fspath(path))
