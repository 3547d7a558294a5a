"""The op layer: dropkit's methods as operators of torch's dispatcher.

The hot primitives — ``dropkit::keep`` (dropout and every keep mask), ``dropkit::keep_affine``
(alpha dropout), ``dropkit::bias_dropout_add``, ``dropkit::blocks`` (DropBlock) — are declared
and given their kernels in :mod:`dropkit.kernels`. The methods written in plain torch (Cutout,
Gaussian noise, embedding dropout, branch dropping, DropConnect's masked layers) are one custom
operator each, made here by one factory from their declaration (:class:`MaskOp`,
:class:`StreamOp`). Either way a call is one operator call, eager or traced. See
``docs/design/ops.md``.
"""

from dropkit.ops import checks
from dropkit.ops._factory import MaskOp, StreamOp, overridable
from dropkit.ops._stream import resolve_stream
from dropkit.ops.drop_connect import CONV2D, CONV2D_PER_SAMPLE, LINEAR, LINEAR_PER_SAMPLE, NORMAL
from dropkit.ops.masks import BRANCHES, EMBEDDING, HOLES, NORMAL_NOISE

__all__ = [
    "BRANCHES",
    "CONV2D",
    "CONV2D_PER_SAMPLE",
    "EMBEDDING",
    "HOLES",
    "LINEAR",
    "LINEAR_PER_SAMPLE",
    "NORMAL",
    "NORMAL_NOISE",
    "MaskOp",
    "StreamOp",
    "checks",
    "overridable",
    "resolve_stream",
]
