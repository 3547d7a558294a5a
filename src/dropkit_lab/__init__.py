"""dropkit's experiment lab: the training engine, the datasets, the papers' experiments, the
report and the ``dropkit`` command, beside the library (:mod:`dropkit` imports nothing of it).

Importing this package imports nothing else (no torch), so the command answers ``--help`` and
``list`` at once; the subpackages :mod:`dropkit_lab.engine`, :mod:`dropkit_lab.data` and
:mod:`dropkit_lab.experiments` need the ``experiments`` extra.
"""
