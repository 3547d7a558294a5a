"""dropkit's functional ops: each does the work; the modules in :mod:`dropkit.nn` wrap them."""

from dropkit.functional.dropout import dropout

__all__ = ["dropout"]
