"""dropkit's modules: thin wrappers holding hyper-parameters that call :mod:`dropkit.functional`."""

from dropkit.nn.alpha import AlphaDropout, FeatureAlphaDropout
from dropkit.nn.broadcast import BroadcastDropout
from dropkit.nn.cutout import Cutout
from dropkit.nn.drop_block import DropBlock2d, DropBlock3d, DropBlockSchedule, LinearSchedule
from dropkit.nn.drop_connect import DropConnectConv2d, DropConnectLinear
from dropkit.nn.drop_path import DropPath, StochasticDepth
from dropkit.nn.dropout import BiasDropoutAdd, Dropout
from dropkit.nn.embedding import EmbeddingDropout
from dropkit.nn.gaussian import GaussianDropout
from dropkit.nn.join_drop import FractalDropPath, JoinDrop
from dropkit.nn.locked import LockedDropout
from dropkit.nn.spatial import Dropout1d, Dropout2d, Dropout3d

__all__ = [
    "AlphaDropout",
    "BiasDropoutAdd",
    "BroadcastDropout",
    "Cutout",
    "DropBlock2d",
    "DropBlock3d",
    "DropBlockSchedule",
    "DropConnectConv2d",
    "DropConnectLinear",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "FractalDropPath",
    "GaussianDropout",
    "JoinDrop",
    "LinearSchedule",
    "LockedDropout",
    "StochasticDepth",
]
