"""OpenMP settings that make idle threads sleep instead of spinning; torch-free, so the CLI can
set them before torch (and its OpenMP runtime) starts. See :mod:`dropkit.engine.threads`."""

from __future__ import annotations

import os

__all__ = ["WAIT_ENVIRONMENT", "passive_wait_environment"]

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
