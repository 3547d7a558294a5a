"""Drop-in replacements for the peers' dropout layers, built on dropkit's ops.

- :mod:`dropkit.compat.timm`: ``DropBlock2d``, ``drop_block_2d``, ``DropPath``, ``drop_path``,
  ``calculate_drop_path_rates`` with timm 1.0.31's arguments, defaults, order and repr.
- :mod:`dropkit.compat.torchvision`: ``drop_block2d``, ``drop_block3d``, ``DropBlock2d``,
  ``DropBlock3d``, ``stochastic_depth``, ``StochasticDepth`` with torchvision 0.28's.

Swap one import (``from timm.layers import DropPath`` -> ``from dropkit.compat.timm import
DropPath``) and the layer draws from dropkit's stream: reproducible under ``torch.manual_seed``,
nothing kept for backward but a seed, per-layer ``generator=``/``seed=`` as keyword extras, and
sampling inside :func:`dropkit.mc.stochastic`. Neither peer is imported (nor needed).
"""

from dropkit.compat import timm, torchvision

__all__ = ["timm", "torchvision"]
