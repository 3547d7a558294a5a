"""Run PyTorch's own dropout tests with torch.nn's dropout names pointed at dropkit's (CPU only).

PyTorch's test files are not in the wheel; pass ``test/nn/test_dropout.py`` from a PyTorch source
checkout at the installed torch's version (it imports ``torch.testing._internal``, which the wheel
does ship)::

    python tools/torch_dropout_tests.py /path/to/pytorch/test/nn/test_dropout.py [-v] [-k PATTERN]

While the file is imported and run, ``torch.nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``,
``FeatureAlphaDropout`` and ``torch.nn.functional.dropout``, ``dropout1d/2d/3d``,
``alpha_dropout``, ``feature_alpha_dropout`` are dropkit's (restored afterwards); device-type
tests are instantiated for the CPU only. Prints one line per failing test with the first line of
its error, then ``passed N failed N errors N skipped N expected-failures N unexpected-successes N``.
Exit status: 0 when nothing failed, 1 when a test failed or errored, 2 for a bad path or when
torch's test helpers cannot be imported (they need ``pip install expecttest``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import sys
import unittest
from collections.abc import Iterator
from pathlib import Path

MODULE_NAMES = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
                "FeatureAlphaDropout")  # fmt: skip
FUNCTION_NAMES = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                  "feature_alpha_dropout")  # fmt: skip


@contextlib.contextmanager
def dropkit_names() -> Iterator[dict[str, object]]:
    """Point torch.nn's and torch.nn.functional's dropout names at dropkit's for the block."""
    import torch.nn
    import torch.nn.functional

    import dropkit.functional
    import dropkit.nn

    swaps = [(torch.nn, name, getattr(dropkit.nn, name)) for name in MODULE_NAMES]
    swaps += [(torch.nn.functional, name, getattr(dropkit.functional, name))
              for name in FUNCTION_NAMES]  # fmt: skip
    saved = [(target, name, getattr(target, name)) for target, name, _ in swaps]
    try:
        for target, name, replacement in swaps:
            setattr(target, name, replacement)
        yield {f"{target.__name__}.{name}": new for target, name, new in swaps}
    finally:
        for target, name, original in saved:
            setattr(target, name, original)


def _load(path: Path):
    """Import the test file as a module (not as ``__main__``, so its ``run_tests()`` stays idle)."""
    spec = importlib.util.spec_from_file_location(f"torch_tests_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    argv, sys.argv = sys.argv, [str(path)]  # torch's test helpers read sys.argv at import
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def _summary(traceback_text: str, path: Path) -> str:
    """The deepest line of the test file in a traceback, and the exception's last line."""
    lines = traceback_text.strip().splitlines()
    where = ""
    for index, line in enumerate(lines):
        match = re.match(r'\s*File "(.+)", line (\d+)', line)
        if match and Path(match.group(1)).name == path.name and index + 1 < len(lines):
            where = f"line {match.group(2)}: {lines[index + 1].strip()} -> "
    return where + (lines[-1].strip() if lines else "")


def run(path: Path, pattern: str | None = None, verbosity: int = 0) -> unittest.TestResult:
    """Import and run the tests of ``path`` under :func:`dropkit_names`; returns the result."""
    # Read by torch.testing._internal.common_device_type when the tests are instantiated.
    os.environ["PYTORCH_TESTING_DEVICE_ONLY_FOR"] = "cpu"
    with dropkit_names():
        module = _load(path)
        loader = unittest.TestLoader()
        if pattern:
            loader.testNamePatterns = [f"*{pattern}*"]
        suite = loader.loadTestsFromModule(module)
        stream = sys.stdout if verbosity else open(os.devnull, "w")  # noqa: SIM115
        try:
            return unittest.TextTestRunner(stream=stream, verbosity=verbosity).run(suite)
        finally:
            if stream is not sys.stdout:
                stream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="PyTorch's test/nn/test_dropout.py")
    parser.add_argument("-k", dest="pattern", help="run only tests whose name contains PATTERN")
    parser.add_argument("-v", "--verbose", action="store_true", help="unittest's verbose output")
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(f"error: {args.path} is not a file (pass PyTorch's test/nn/test_dropout.py)",
              file=sys.stderr)  # fmt: skip
        return 2
    import torch

    try:
        import torch.testing._internal.common_utils  # noqa: F401
    except ModuleNotFoundError as error:
        print(f"error: torch's test helpers need the module {error.name!r} (pip install "
              f"{error.name})", file=sys.stderr)  # fmt: skip
        return 2
    print(f"torch {torch.__version__}; running {args.path} with dropkit's dropout names")
    result = run(args.path, args.pattern, 2 if args.verbose else 0)
    unexpected = [(test, "") for test in result.unexpectedSuccesses]
    kinds = (
        ("FAIL", result.failures),
        ("ERROR", result.errors),
        ("UNEXPECTED-SUCCESS", unexpected),
    )
    for kind, entries in kinds:
        for test, text in entries:
            print(f"{kind} {test.id()}: {_summary(text, args.path)}")
    broken = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - broken - len(result.skipped) - len(result.expectedFailures)
    print(
        f"passed {passed} failed {len(result.failures)} errors {len(result.errors)} "
        f"skipped {len(result.skipped)} expected-failures {len(result.expectedFailures)} "
        f"unexpected-successes {len(result.unexpectedSuccesses)}"
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
