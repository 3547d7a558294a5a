"""The op layer: every dropkit method as a stream op made by one factory.

A method declares its mask and multiplier (:class:`MaskOp`) or, for ops that are more than a
multiplier (DropConnect's masked layers, the fused bias-dropout-add), its forward and backward
(:class:`StreamOp`); the factory makes the custom op ``dropkit::<name>``, its fake, the autograd
rule that keeps only the seed (and the tensors the rule names), and the cheap eager route. See
``docs/design/ops.md``.
"""

from dropkit.ops import checks
from dropkit.ops._factory import MaskOp, StreamOp, overridable
from dropkit.ops._route import plain_eager
from dropkit.ops._stream import draw_seed, resolve_stream, seed_tensor
from dropkit.ops.drop_connect import CONV2D, CONV2D_PER_SAMPLE, LINEAR, LINEAR_PER_SAMPLE, NORMAL
from dropkit.ops.fused import BIAS_DROPOUT_ADD
from dropkit.ops.masks import ALPHA, BLOCKS, BRANCHES, HOLES, KEEP, NORMAL_NOISE, WORDS

__all__ = [
    "ALPHA",
    "BIAS_DROPOUT_ADD",
    "BLOCKS",
    "BRANCHES",
    "CONV2D",
    "CONV2D_PER_SAMPLE",
    "HOLES",
    "KEEP",
    "LINEAR",
    "LINEAR_PER_SAMPLE",
    "NORMAL",
    "NORMAL_NOISE",
    "WORDS",
    "MaskOp",
    "StreamOp",
    "checks",
    "draw_seed",
    "overridable",
    "plain_eager",
    "resolve_stream",
    "seed_tensor",
]
