"""dropkit's modules: thin wrappers holding hyper-parameters that call :mod:`dropkit.functional`."""

from dropkit.nn.drop_connect import DropConnectConv2d, DropConnectLinear
from dropkit.nn.drop_path import DropPath, StochasticDepth
from dropkit.nn.dropout import Dropout
from dropkit.nn.embedding import EmbeddingDropout
from dropkit.nn.join_drop import FractalDropPath, JoinDrop
from dropkit.nn.noise import AlphaDropout, FeatureAlphaDropout, GaussianDropout
from dropkit.nn.regions import Cutout, DropBlock2d, DropBlock3d, LinearSchedule
from dropkit.nn.structured import (
    BroadcastDropout,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    LockedDropout,
)

__all__ = [
    "AlphaDropout",
    "BroadcastDropout",
    "Cutout",
    "DropBlock2d",
    "DropBlock3d",
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
