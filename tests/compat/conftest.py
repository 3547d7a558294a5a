"""Fixtures: the installed timm and torchvision layers (the references), and forced Bernoulli draws.

``import timm`` / ``import torchvision`` can fail where torchvision's compiled extension does not
match the installed torch (here: "operator torchvision::nms does not exist"). The layers under test
are plain Python, so this loads the installed, unmodified files ``timm/layers/drop.py``,
``torchvision/ops/drop_block.py`` and ``torchvision/ops/stochastic_depth.py`` directly, giving
torchvision's relative ``from ..utils import _log_api_usage_once`` a stand-in package.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path
from unittest import mock

import pytest
import torch


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


@pytest.fixture(scope="session")
def forced_bernoulli():
    """``with forced_bernoulli(*values):`` — inside the block, ``Tensor.bernoulli_`` fills its
    tensor with the next of ``values`` instead of drawing: how a peer's mask is given."""

    @contextlib.contextmanager
    def force(*values: torch.Tensor):
        queue = list(values)

        def fake(self, p=0.5, *, generator=None):
            if not queue:
                raise AssertionError("more bernoulli_ calls than forced masks")
            value = queue.pop(0)
            assert value.shape == self.shape, (value.shape, self.shape)
            return self.copy_(value)

        with mock.patch.object(torch.Tensor, "bernoulli_", fake):
            yield
        assert not queue, "a forced mask was not used"

    return force
