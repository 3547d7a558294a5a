"""JSON files written atomically (temporary file in the same folder, fsync, ``os.replace``)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["jsonable", "read_json", "write_json_atomic"]


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


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(jsonable(obj), f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)
