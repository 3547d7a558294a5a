"""``python -m dropkit.cli``: the ``dropkit`` command (:mod:`dropkit_cli`, which answers
``--help`` and ``list`` without importing torch; this module's package imports it)."""

import sys

from dropkit_cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
