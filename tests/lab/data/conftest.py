import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from dropkit_lab.data.mnist import IdxDatasetSpec, IdxFile


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def idx_bytes():
    """Encode a uint8 array as IDX bytes."""
    return _idx_bytes


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def tiny_idx(tmp_path):
    """A fake 4-file IDX dataset (gzip files under ``src/``) and its spec."""
    rng = np.random.RandomState(1)
    arrays = {
        "train_images": rng.randint(0, 256, size=(6, 28, 28)),
        "train_labels": np.arange(6) % 10,
        "test_images": rng.randint(0, 256, size=(4, 28, 28)),
        "test_labels": np.arange(4),
    }
    names = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for role, array in arrays.items():
        raw = _idx_bytes(array)
        gz = gzip.compress(raw, mtime=0)
        (src / f"{names[role]}.gz").write_bytes(gz)
        files[role] = IdxFile(names[role], md5(gz), md5(raw), array.shape)
    spec = IdxDatasetSpec("tiny", "Tiny", files, (src.as_uri() + "/",), ("", "tiny"))
    return spec, arrays, src


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (name -> bytes), honouring ``Range: bytes=N-`` unless ``ignore_range``."""

    files: dict = {}
    ignore_range = False
    requests: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        name = self.path.lstrip("/")
        type(self).requests.append((name, self.headers.get("Range")))
        if name not in self.files:
            self.send_error(404)
            return
        data = self.files[name]
        rng = self.headers.get("Range")
        if rng and not self.ignore_range:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    handler = type("Handler", (RangeHandler,), {"files": {}, "requests": [], "ignore_range": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()
