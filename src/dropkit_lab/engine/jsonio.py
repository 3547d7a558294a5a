"""Files written atomically, and JSON records that carry their own checksum.

Every file goes to a temporary file with a unique name in the same folder (``tempfile.mkstemp``:
two writers never share one), is flushed and fsynced, given the mode of a normal new file (0666
less the umask, like the report; mkstemp's own 0600 would hide results from the group), and renamed
onto its name (``os.replace``: atomic). A writer killed at any moment leaves the previous file or
the new one, never a half-written one; its temporary file (``<name>.<random>.tmp``) is removed when
the writer can still clean up, and :func:`remove_stale_temporaries` clears what a killed one left.

A *record* is a JSON object with a ``sha256`` member: the SHA-256 of the object's canonical JSON
(sorted keys, no spaces) without that member. :func:`read_record` checks it, so a damaged file or a
hand-edited value is found, and raises :class:`DamagedFileError` naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "DamagedFileError",
    "UncheckedFileError",
    "atomic_open",
    "jsonable",
    "read_json",
    "read_record",
    "record_digest",
    "remove_stale_temporaries",
    "write_json_atomic",
    "write_record",
]

TMP_SUFFIX = ".tmp"


class DamagedFileError(ValueError):
    """A file exists but cannot be used: unreadable, not the expected JSON, or fails its checksum.

    ``path`` is the file, ``reason`` what is wrong with it."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class UncheckedFileError(DamagedFileError):
    """A JSON object without a checksum: written by a dropkit older than checksums (or with the
    checksum removed). ``record`` holds what was read; the caller decides whether to adopt it."""

    def __init__(self, path: str | os.PathLike, record: dict) -> None:
        super().__init__(path, "has no checksum (sha256): written by an older dropkit?")
        self.record = record


def jsonable(obj):
    """What ``obj`` reads back as once written: non-finite floats become None (strict JSON),
    tuples lists and keys strings."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def _file_mode() -> int:
    """0666 less the process's umask: the mode ``open(path, "w")`` would give a new file."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a unique temporary file beside ``path``; on a clean exit it replaces ``path``.

    ``mode`` is ``"w"`` or ``"wb"``. On an exception (Ctrl-C included) the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    with atomic_open(path) as f:
        json.dump(jsonable(obj), f, indent=1, sort_keys=False)
        f.write("\n")
    return Path(path)


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)


def record_digest(record: dict) -> str:
    """SHA-256 of ``record``'s canonical JSON without its ``sha256`` member."""
    body = {k: v for k, v in jsonable(record).items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write_record(path: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` (a dict) with its checksum, atomically."""
    record = jsonable(record)
    record["sha256"] = record_digest(record)
    return write_json_atomic(path, record)


def read_record(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    """Read a record written by :func:`write_record`, verify its checksum and that it holds the
    ``required`` members; :class:`DamagedFileError` (naming the file and what is wrong) if not."""
    path = Path(path)
    if path.is_dir():
        raise DamagedFileError(path, "is a folder, not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DamagedFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise DamagedFileError(path, "is empty")
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFileError(path, f"is not valid JSON (truncated or damaged: {exc})") from exc
    if not isinstance(record, dict):
        raise DamagedFileError(path, f"holds a JSON {type(record).__name__}, not an object")
    missing = [k for k in required if k not in record]
    if missing:
        raise DamagedFileError(path, f"lacks {', '.join(missing)}")
    if "sha256" not in record:
        raise UncheckedFileError(path, record)
    if record_digest(record) != record["sha256"]:
        raise DamagedFileError(path, "fails its checksum (edited or damaged after it was written)")
    return record


def remove_stale_temporaries(folder: str | os.PathLike, say: Callable[[str], None]) -> int:
    """Delete the temporary files a killed writer left below ``folder``; returns their number.

    Only for a folder no other process writes to (the runner holds its lock)."""
    removed = 0
    for tmp in Path(folder).rglob(f"*{TMP_SUFFIX}"):
        if tmp.is_file():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
    if removed:
        files = "file" if removed == 1 else "files"
        say(f"removed {removed} unfinished temporary {files} left in {folder} by a stopped run")
    return removed
