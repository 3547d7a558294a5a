"""dropkit's modules: thin wrappers holding hyper-parameters that call :mod:`dropkit.functional`."""

from dropkit.nn.dropout import Dropout

__all__ = ["Dropout"]
