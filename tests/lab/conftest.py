"""The lab's tests: a private cache folder for every test."""

import os
from pathlib import Path

import pytest

from dropkit_lab.environment import CACHE_ENV, OLD_CACHE_ENV, cache_dir


@pytest.fixture(scope="session")
def _user_cache() -> Path:
    """dropkit's cache as the tests found it, with the C++ kernels built there (once)."""
    import torch

    import dropkit.functional as F

    environ = {k: v for k, v in os.environ.items() if k not in (CACHE_ENV, OLD_CACHE_ENV)}
    root = cache_dir(environ)
    saved = os.environ.pop(CACHE_ENV, None)
    try:
        F.dropout(torch.ones(8), 0.5, True)  # builds or loads the kernels in that cache
    finally:
        if saved is not None:
            os.environ[CACHE_ENV] = saved
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch, _user_cache) -> Path:
    """``$DROPKIT_CACHE_DIR`` for this test (and its subprocesses): a fresh folder, so the runner's
    speed file is the test's own, that links the user cache's built kernels (not rebuilt)."""
    cache = tmp_path_factory.mktemp("cache")
    if _user_cache.is_dir():
        for entry in _user_cache.iterdir():
            if entry.name != "speed.json":
                (cache / entry.name).symlink_to(entry)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.delenv(OLD_CACHE_ENV, raising=False)
    return cache
