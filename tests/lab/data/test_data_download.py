import hashlib
import os
import socket

import pytest

from dropkit_lab.data import DownloadError, download

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_download_http_verifies_and_renames(http_server, tmp_path):
    base, handler = http_server
    handler.files["f.gz"] = PAYLOAD
    dest = tmp_path / "sub" / "f.gz"
    seen = []
    assert download(base + "f.gz", dest, MD5, progress=seen.append) == str(dest)
    assert dest.read_bytes() == PAYLOAD
    assert sum(seen) == len(PAYLOAD)
    assert not os.path.exists(str(dest) + ".part")


def test_download_resumes_with_range(http_server, tmp_path):
    base, handler = http_server
    handler.files["f.gz"] = PAYLOAD
    dest = tmp_path / "f.gz"
    (tmp_path / "f.gz.part").write_bytes(PAYLOAD[:300_000])
    seen = []
    download(base + "f.gz", dest, MD5, progress=seen.append)
    assert dest.read_bytes() == PAYLOAD
    assert handler.requests == [("f.gz", "bytes=300000-")]
    assert sum(seen) == len(PAYLOAD) - 300_000  # only the rest travelled


def test_download_restarts_when_server_ignores_range(http_server, tmp_path):
    base, handler = http_server
    handler.files["f.gz"] = PAYLOAD
    handler.ignore_range = True
    dest = tmp_path / "f.gz"
    (tmp_path / "f.gz.part").write_bytes(b"junk" * 10)
    download(base + "f.gz", dest, MD5)
    assert dest.read_bytes() == PAYLOAD


def test_stale_part_with_wrong_bytes_is_discarded_and_refetched(http_server, tmp_path):
    base, handler = http_server
    handler.files["f.gz"] = PAYLOAD
    dest = tmp_path / "f.gz"
    (tmp_path / "f.gz.part").write_bytes(b"\xff" * 1000)  # resumable but wrong content
    download(base + "f.gz", dest, MD5)
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in handler.requests] == ["bytes=1000-", None]


def test_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    base, handler = http_server
    handler.files["f.gz"] = PAYLOAD
    dest = tmp_path / "f.gz"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(base + "f.gz", dest, "0" * 32)
    assert os.listdir(tmp_path) == []


def test_http_404_and_refused_connection(http_server, tmp_path):
    base, _ = http_server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(base + "missing.gz", tmp_path / "x", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(DownloadError, match="cannot connect"):
        download(f"http://127.0.0.1:{port}/x.gz", tmp_path / "x", None, timeout=5)
    assert os.listdir(tmp_path) == []


def test_file_url_and_resume(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "dst.bin"
    dest.parent.mkdir()
    (dest.parent / "dst.bin.part").write_bytes(PAYLOAD[:12345])
    seen = []
    download(src.as_uri(), dest, MD5, progress=seen.append)
    assert dest.read_bytes() == PAYLOAD
    assert sum(seen) == len(PAYLOAD) - 12345
