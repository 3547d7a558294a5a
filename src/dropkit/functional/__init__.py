"""dropkit's functional ops: each does the work; the modules in :mod:`dropkit.nn` wrap them."""

from dropkit.functional.alpha import alpha_dropout, feature_alpha_dropout
from dropkit.functional.bias_dropout_add import bias_dropout_add
from dropkit.functional.broadcast import broadcast_dropout
from dropkit.functional.cutout import cutout
from dropkit.functional.drop_block import drop_block2d, drop_block3d, drop_block_gamma
from dropkit.functional.drop_connect import drop_connect_conv2d, drop_connect_linear
from dropkit.functional.drop_path import drop_path, linear_decay_rates, stochastic_depth
from dropkit.functional.dropout import dropout
from dropkit.functional.embedding import embedding_dropout
from dropkit.functional.gaussian import gaussian_dropout
from dropkit.functional.join_drop import drop_branches
from dropkit.functional.locked import locked_dropout
from dropkit.functional.spatial import dropout1d, dropout2d, dropout3d

__all__ = [
    "alpha_dropout",
    "bias_dropout_add",
    "broadcast_dropout",
    "cutout",
    "drop_block2d",
    "drop_block3d",
    "drop_block_gamma",
    "drop_branches",
    "drop_connect_conv2d",
    "drop_connect_linear",
    "drop_path",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "embedding_dropout",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "linear_decay_rates",
    "locked_dropout",
    "stochastic_depth",
]
