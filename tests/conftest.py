import contextlib
import importlib.metadata
import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def mnist_data_dir() -> Path | None:
    """Where the MNIST tests find the data, as users keep it: ``$DROPKIT_DATA``, then
    ``../shared/datasets`` beside the clone (holding ``mnist/``); None when neither has it."""
    from dropkit_lab.data.mnist import MNIST, locate_files

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


@pytest.fixture(scope="session")
def mnist_dir_or_none() -> Path | None:
    """The MNIST data folder, or None where there is none (for tests that run either way)."""
    return mnist_data_dir()


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may change the default generator's state or thread count; restore both."""
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    yield
    torch.set_rng_state(state)
    torch.set_num_threads(threads)


# -- The peers: timm's and torchvision's dropout-family layers ------------------------------------
# ``import timm`` / ``import torchvision`` fail where torchvision's compiled extension does not
# match the installed torch (PyPI's torchvision wheel beside torch's CPU build: "operator
# torchvision::nms does not exist"). The layers compared against are plain Python, so the
# installed, unmodified files timm/layers/drop.py, torchvision/ops/drop_block.py and
# torchvision/ops/stochastic_depth.py are loaded directly, torchvision's relative
# ``from ..utils import _log_api_usage_once`` given a stand-in package.


def _file(distribution: str, relative: str) -> Path:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} is not installed (pip install --no-deps {distribution})")
    return Path(dist.locate_file(relative))


def _exec(name: str, path: Path, package: str | None = None) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if package is not None:
        module.__package__ = package
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def timm_layers() -> types.ModuleType:
    """``timm.layers.drop`` (the installed file)."""
    if "_peer_timm_drop" in sys.modules:
        return sys.modules["_peer_timm_drop"]
    return _exec("_peer_timm_drop", _file("timm", "timm/layers/drop.py"))


@pytest.fixture(scope="session")
def tv_ops() -> types.SimpleNamespace:
    """torchvision's ``drop_block2d/3d``, ``DropBlock2d/3d``, ``stochastic_depth``,
    ``StochasticDepth`` (the installed files)."""
    if "_peer_tv.ops.drop_block" not in sys.modules:
        root = types.ModuleType("_peer_tv")
        root.__path__ = []
        ops = types.ModuleType("_peer_tv.ops")
        ops.__path__ = []
        utils = types.ModuleType("_peer_tv.utils")
        utils._log_api_usage_once = lambda obj: None
        sys.modules.update({"_peer_tv": root, "_peer_tv.ops": ops, "_peer_tv.utils": utils})
        for stem in ("drop_block", "stochastic_depth"):
            _exec(f"_peer_tv.ops.{stem}", _file("torchvision", f"torchvision/ops/{stem}.py"),
                  "_peer_tv.ops")  # fmt: skip
    block, depth = (
        sys.modules["_peer_tv.ops.drop_block"],
        sys.modules["_peer_tv.ops.stochastic_depth"],
    )
    return types.SimpleNamespace(
        drop_block2d=block.drop_block2d, drop_block3d=block.drop_block3d,
        DropBlock2d=block.DropBlock2d, DropBlock3d=block.DropBlock3d,
        stochastic_depth=depth.stochastic_depth, StochasticDepth=depth.StochasticDepth,
    )  # fmt: skip


# -- The kernels: the compiled CPU kernels, or the reference in their place ----------------------
@contextlib.contextmanager
def _cpu_kernels(name: str):
    """Inside, the ``dropkit`` operators' CPU key runs ``name``'s kernels: ``"cpu"`` (whatever this
    process loaded: the compiled library, or the reference where it could not be built) or
    ``"reference"`` (plain torch, registered over the compiled kernels and removed on exit)."""
    if name == "cpu":
        yield
        return
    from dropkit.kernels import _REFERENCE

    library = torch.library.Library("dropkit", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
            for op, kernel in _REFERENCE.items():
                library.impl(op, kernel, "CPU")
        yield
    finally:
        library._destroy()


@pytest.fixture
def cpu_kernels():
    """:func:`_cpu_kernels`: ``with cpu_kernels("reference"): ...``."""
    return _cpu_kernels
