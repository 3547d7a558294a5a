"""The peers' regularizers (torchvision's DropBlock and stochastic depth, timm's DropBlock and
drop-path), loaded from their installed source files.

torchvision 0.28.0 installed beside torch 2.13.0 fails to import here ("operator torchvision::nms
does not exist": its compiled extension does not load) and ``timm.layers`` imports torchvision;
the methods compared against are plain Python files that need neither. A helper returns None when
the package is not installed; the fixtures skip then.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import pytest


def _source(package: str, relative: str) -> pathlib.Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(spec.submodule_search_locations[0], relative)
    return path if path.exists() else None


def _load(name: str, path: pathlib.Path, package: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package
    spec.loader.exec_module(module)
    return module


def torchvision_ops() -> types.SimpleNamespace | None:
    """``drop_block2d``, ``drop_block3d``, ``DropBlock2d``, ``DropBlock3d``, ``stochastic_depth``
    and ``StochasticDepth`` of the installed torchvision."""
    files = [_source("torchvision", f"ops/{f}.py") for f in ("drop_block", "stochastic_depth")]
    if None in files:
        return None
    # the one thing they import from torchvision: a usage logger
    root = "_dropkit_peer_torchvision"
    if root not in sys.modules:
        for name in (root, f"{root}.ops"):
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].__path__ = []
        utils = types.ModuleType(f"{root}.utils")
        utils._log_api_usage_once = lambda obj: None
        sys.modules[utils.__name__] = utils
    block = _load(f"{root}.ops.drop_block", files[0], f"{root}.ops")
    depth = _load(f"{root}.ops.stochastic_depth", files[1], f"{root}.ops")
    return types.SimpleNamespace(
        drop_block2d=block.drop_block2d, drop_block3d=block.drop_block3d,
        DropBlock2d=block.DropBlock2d, DropBlock3d=block.DropBlock3d,
        stochastic_depth=depth.stochastic_depth, StochasticDepth=depth.StochasticDepth,
    )  # fmt: skip


def timm_drop() -> types.ModuleType | None:
    """``timm.layers.drop`` of the installed timm (``drop_block_2d``, ``drop_path``, ...)."""
    path = _source("timm", "layers/drop.py")
    return None if path is None else _load("_dropkit_peer_timm_drop", path, "")


@pytest.fixture
def tv_ops() -> types.SimpleNamespace:
    found = torchvision_ops()
    if found is None:
        pytest.skip("torchvision is not installed")
    return found


@pytest.fixture
def timm_layers() -> types.ModuleType:
    found = timm_drop()
    if found is None:
        pytest.skip("timm is not installed")
    return found
