"""Downloading one file: checksum-verified, atomic and resumable, with the standard library only.

The bytes go to ``<dest>.part`` (resumed with an HTTP ``Range`` request, or by seeking for
``file://`` URLs, when a previous attempt was interrupted); the MD5 of the finished ``.part`` is
checked, and only then is it renamed onto ``dest`` with :func:`os.replace` (atomic on POSIX and
Windows). So ``dest`` is either absent or complete and verified, whatever happens; a ``.part``
whose content fails the checksum is deleted, never kept.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

__all__ = ["DownloadError", "download", "md5_bytes", "md5_file"]

_CHUNK = 1 << 20


class DownloadError(OSError):
    """A download failed (network, HTTP status, or checksum); the message names URL and file."""


def md5_file(path: str | os.PathLike, chunk: int = _CHUNK) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _open(url: str, start: int, timeout: float):
    """Open ``url`` positioned at byte ``start``; returns (stream, resumed: bool)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        f = open(urllib.request.url2pathname(parsed.path), "rb")  # noqa: SIM115 - caller closes
        f.seek(start)
        return f, start > 0
    request = urllib.request.Request(url, headers={"User-Agent": "dropkit"})
    if start > 0:
        request.add_header("Range", f"bytes={start}-")
    response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs are ours
    # A server that ignores Range answers 200 with the whole file: start again from byte 0.
    return response, start > 0 and getattr(response, "status", 200) == 206


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    *,
    timeout: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Fetch ``url`` into ``dest``, verifying ``md5`` (hex) when given; returns ``dest``.

    Resumes from ``dest + ".part"`` when one exists. If a resumed download fails its checksum the
    stale part is deleted and the download restarted once from byte 0. ``progress`` is called with
    the number of bytes written by each chunk. Raises :class:`DownloadError`.
    """
    dest = os.fspath(dest)
    part = dest + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    for attempt in range(2):
        start = os.path.getsize(part) if os.path.exists(part) else 0
        try:
            stream, resumed = _open(url, start, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start > 0:  # the part is already complete (or too long)
                resumed, stream = True, None
            else:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"{url}: cannot connect ({reason})") from exc
        if stream is not None:
            try:
                with stream, open(part, "ab" if resumed else "wb") as out:
                    for block in iter(lambda s=stream: s.read(_CHUNK), b""):
                        out.write(block)
                        if progress is not None:
                            progress(len(block))
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                # Keep the part: the next call resumes from where this one stopped.
                raise DownloadError(f"{url}: interrupted after {start} bytes ({exc})") from exc
        if md5 is None or md5_file(part) == md5:
            os.replace(part, dest)
            return dest
        got = md5_file(part)
        os.remove(part)
        if not resumed or attempt == 1:
            raise DownloadError(f"{url}: checksum mismatch for {dest} (md5 {got}, expected {md5})")
    raise AssertionError("unreachable")
