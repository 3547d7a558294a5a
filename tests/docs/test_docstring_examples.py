"""The ``>>>`` examples in the docstrings that the API reference shows run.

The reference pages (``docs/reference/``) render the docstrings of these packages and modules;
their examples assume a ``model`` and an ``optimizer`` already exist, which the test provides.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import dropkit

# What docs/reference/*.md renders with mkdocstrings.
DOCUMENTED = [
    "dropkit.functional",
    "dropkit.nn",
    "dropkit.mc",
    "dropkit.convert",
    "dropkit.replace",
    "dropkit.constraints",
    "dropkit.rng",
    "dropkit.kernels",
]


def documented_modules() -> list[str]:
    names = []
    for name in DOCUMENTED:
        module = importlib.import_module(name)
        names.append(name)
        if hasattr(module, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(module.__path__, f"{name}.")]
    return sorted(set(names))


def examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in documented_modules():
        found += [t for t in finder.find(importlib.import_module(name)) if t.examples]
    return found


def test_the_reference_has_docstring_examples():
    assert examples()


@pytest.mark.parametrize("test", examples(), ids=lambda t: t.name)
def test_docstring_example_runs(test: doctest.DocTest):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    test.globs = {
        **test.globs,
        "torch": torch,
        "dropkit": dropkit,
        "model": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
    }
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda text: pytest.fail(text, pytrace=False))
    assert runner.failures == 0
