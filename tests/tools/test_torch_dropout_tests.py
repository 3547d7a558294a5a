"""tools/torch_dropout_tests.py runs a torch-style test file with dropkit's names and counts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import dropkit

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "torch_dropout_tests.py"

SYNTHETIC = """
import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_utils import TestCase, run_tests

import dropkit

MODULES = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]
FUNCTIONS = ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
             "feature_alpha_dropout"]


class TestNames(TestCase):
    def test_modules_are_dropkits(self):
        for name in MODULES:
            self.assertIs(getattr(nn, name), getattr(dropkit.nn, name))

    def test_functions_are_dropkits(self):
        for name in FUNCTIONS:
            self.assertIs(getattr(F, name), getattr(dropkit.functional, name))
        self.assertIs(torch.nn.functional.dropout, dropkit.functional.dropout)

    def test_fails(self):
        self.assertEqual(nn.Dropout(0.5).p, 0.25)

    def test_errors(self):
        raise KeyError("boom")

    @unittest.skip("not here")
    def test_skipped(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.fail("known")


class TestOnDevice(TestCase):
    def test_device(self, device):
        self.assertEqual(torch.device(device).type, "cpu")


instantiate_device_type_tests(TestOnDevice, globals())

if __name__ == "__main__":
    run_tests()
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip


def test_runs_a_test_file_with_dropkits_names_on_the_cpu_and_counts(tmp_path):
    pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest")
    path = tmp_path / "test_synthetic.py"
    path.write_text(textwrap.dedent(SYNTHETIC))
    result = _run(str(path))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == (
        "passed 3 failed 1 errors 1 skipped 1 expected-failures 1 unexpected-successes 0"
    ), result.stdout + result.stderr
    failures = [line for line in lines if line.startswith(("FAIL ", "ERROR "))]
    assert len(failures) == 2
    assert any("TestNames.test_fails" in f and "self.assertEqual(nn.Dropout(0.5).p, 0.25)" in f
               for f in failures)  # fmt: skip
    assert any("TestNames.test_errors" in f and "KeyError: 'boom'" in f for f in failures)
    # a pattern selects tests; all selected pass -> exit status 0
    selected = _run(str(path), "-k", "dropkits")
    assert selected.returncode == 0, selected.stdout + selected.stderr
    assert selected.stdout.strip().splitlines()[-1].startswith("passed 2 failed 0 errors 0 ")


def test_a_missing_file_is_refused(tmp_path):
    result = _run(str(tmp_path / "nope.py"))
    assert result.returncode == 2 and "is not a file" in result.stderr


def test_names_are_restored_after_the_run():
    spec = importlib.util.spec_from_file_location("torch_dropout_tests", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    before = torch.nn.Dropout, torch.nn.functional.feature_alpha_dropout
    try:
        with tool.dropkit_names() as swapped:
            assert torch.nn.Dropout is dropkit.nn.Dropout
            assert torch.nn.functional.feature_alpha_dropout is (
                dropkit.functional.feature_alpha_dropout
            )
            assert len(swapped) == 12
            raise RuntimeError("leave the block by an exception")
    except RuntimeError:
        pass
    assert (torch.nn.Dropout, torch.nn.functional.feature_alpha_dropout) == before
