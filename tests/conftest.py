import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def mnist_data_dir() -> Path | None:
    """Where the MNIST tests find the data, as users keep it: ``$DROPKIT_DATA``, then
    ``../shared/datasets`` beside the clone (holding ``mnist/``); None when neither has it."""
    from dropkit.data.mnist import MNIST, locate_files

    candidates = [Path(os.environ["DROPKIT_DATA"])] if os.environ.get("DROPKIT_DATA") else []
    candidates.append(REPO.parent / "shared" / "datasets")
    for root in candidates:
        if all(locate_files(MNIST, root).values()):
            return root
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The MNIST data folder (see :func:`mnist_data_dir`); skips the test when there is none."""
    root = mnist_data_dir()
    if root is None:
        pytest.skip("MNIST not found: set DROPKIT_DATA or put it in ../shared/datasets/mnist")
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """The runner's speed measurements go to a temporary cache, not the user's."""
    monkeypatch.setenv("DROPKIT_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may change the default generator's state or thread count; restore both."""
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    yield
    torch.set_rng_state(state)
    torch.set_num_threads(threads)
