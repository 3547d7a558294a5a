"""The GPU scripts' own logic, on the CPU: benchmarks/gpu_mlp_stack.py and benchmarks/gpu_run.sh
(benchmarks/gpu.py --check is tested in tests/kernels/test_triton.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **extra)
    env.pop("TRITON_INTERPRET", None)
    env.pop("DROPKIT_CUDA_SELF_CHECK", None)
    return env


def test_mlp_stack_cpu_check(tmp_path):
    out = tmp_path / "mlp.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_mlp_stack.py"), "--cpu-check", "--json",
         str(out)],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert set(figures["median_step_s"]) == {"none", "torch", "dropkit", "dropkit_bda"}
    assert all(t > 0 for t in figures["median_step_s"].values())
    assert figures["cpu_check"] and len(figures["verdicts"]) == 2


def test_gpu_run_usage():
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_run.sh")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "usage: bash benchmarks/gpu_run.sh [--cpu-check] OUT_DIR" in result.stderr


def _python_dir() -> str:
    return str(Path(sys.executable).parent)


@pytest.mark.slow
def test_gpu_run_cpu_check(tmp_path, mnist_dir_or_none):
    # The whole script on the CPU (a few minutes on 2 cores): every part runs, one JSON file.
    if shutil.which("timeout") is None:
        pytest.skip("coreutils' timeout is missing")
    # With MNIST beside the clone, the paper protocol's part runs too (the smoke profile here).
    data = mnist_dir_or_none
    env = _env(PATH=_python_dir() + os.pathsep + os.environ["PATH"], PYTHON=sys.executable)
    env.pop("DROPKIT_DATA", None)
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), "--cpu-check", str(tmp_path),
         *([str(data)] if data else [])],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    figures = json.loads((tmp_path / "gpu_results.json").read_text())
    assert figures["mode"] == "cpu"
    parts = {"gpu_bench", "mlp_stack", "cuda_tests"} | ({"paper"} if data else set())
    assert {name for name in figures["parts"]} == parts
    if data:
        assert figures["parts"]["paper"]["exit"] == "0"
    assert figures["gpu_bench"]["bit_failures"] == []
    assert figures["mlp_stack"]["cpu_check"]
    assert figures["cuda_tests"]["tests"] > 100
    assert "== summary ==" in result.stdout


def test_gpu_run_names_a_missing_pytest_and_skips_the_tests(tmp_path):
    # A Python without pytest (simulated): the test part is skipped and named, the status is 1,
    # and the other parts' figures still reach gpu_results.json. A tiny budget keeps it short.
    if shutil.which("timeout") is None:
        pytest.skip("coreutils' timeout is missing")
    block = tmp_path / "block"
    block.mkdir()
    (block / "pytest.py").write_text("raise ImportError('blocked')\n")
    out = tmp_path / "out"
    env = _env(PYTHON=sys.executable, GPU_RUN_BUDGET_S="25")
    env["PYTHONPATH"] = str(block)
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), "--cpu-check", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "cuda_tests: SKIPPED (pytest is missing" in result.stdout
    figures = json.loads((out / "gpu_results.json").read_text())
    assert figures["parts"]["cuda_tests"]["exit"] == "skipped"
    assert "pytest" in figures["env"]
