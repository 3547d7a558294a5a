"""dropkit's modules: thin wrappers holding hyper-parameters that call :mod:`dropkit.functional`."""

from dropkit.nn.dropout import Dropout
from dropkit.nn.noise import AlphaDropout, FeatureAlphaDropout, GaussianDropout
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
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "LockedDropout",
]
