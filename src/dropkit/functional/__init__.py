"""dropkit's functional ops: each does the work; the modules in :mod:`dropkit.nn` wrap them."""

from dropkit.functional.alpha import alpha_dropout, feature_alpha_dropout
from dropkit.functional.broadcast import broadcast_dropout
from dropkit.functional.dropout import dropout
from dropkit.functional.gaussian import gaussian_dropout
from dropkit.functional.locked import locked_dropout
from dropkit.functional.spatial import dropout1d, dropout2d, dropout3d

__all__ = [
    "alpha_dropout",
    "broadcast_dropout",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "locked_dropout",
]
