"""The process's surroundings, torch-free so that the CLI can read them at once: OpenMP settings
that make idle threads sleep instead of spinning (set before torch and its OpenMP runtime start;
see :mod:`dropkit_lab.engine.threads`) and dropkit's cache folder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["WAIT_ENVIRONMENT", "cache_dir", "passive_wait_environment", "speed_file"]

#: Idle OpenMP threads sleep at once (GNU libgomp: ``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT``; Intel's
#: runtime: ``KMP_BLOCKTIME``) instead of spinning on a core another process needs.
WAIT_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}


def passive_wait_environment(environ: dict | None = None) -> dict:
    """Set :data:`WAIT_ENVIRONMENT` in ``environ`` (default ``os.environ``) where the user has
    not set the variable; returns what was set. Effective for OpenMP runtimes started later
    (this process before ``import torch``, or child processes)."""
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in WAIT_ENVIRONMENT.items() if k not in environ}
    environ.update(added)
    return added


#: The one cache folder of dropkit (the C++ kernels of :mod:`dropkit.kernels.cpu` and the
#: runner's measured speed): ``$DROPKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dropkit``, else
#: ``~/.cache/dropkit``.
CACHE_ENV = "DROPKIT_CACHE_DIR"
#: The runner's former name for it (its speed file only); still read, with a DeprecationWarning.
OLD_CACHE_ENV = "DROPKIT_CACHE"
DEPRECATED_CACHE = (
    f"{OLD_CACHE_ENV} is deprecated and will be removed: set {CACHE_ENV}, dropkit's one cache "
    "folder (kernels and the runner's speed file)"
)


def cache_dir(environ=None) -> Path:
    """dropkit's cache folder, as :func:`dropkit.kernels.cpu.cache_dir` finds it (torch-free
    here). Where only the old ``DROPKIT_CACHE`` is set, it is used, with a DeprecationWarning."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV]).expanduser()
    if environ.get(OLD_CACHE_ENV):
        warnings.warn(DEPRECATED_CACHE, DeprecationWarning, stacklevel=2)
        return Path(environ[OLD_CACHE_ENV]).expanduser()
    xdg = environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dropkit"


def speed_file(environ=None) -> Path:
    """Where the runner keeps this machine's measured training speed: ``<cache>/speed.json``."""
    return cache_dir(environ) / "speed.json"
