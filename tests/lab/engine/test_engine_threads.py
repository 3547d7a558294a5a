import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropkit_lab.engine.threads import (
    SMALL_WORK,
    WAIT_ENVIRONMENT,
    available_cores,
    choose_threads,
    passive_wait_environment,
    step_work,
)


def test_small_nets_get_one_thread_whatever_the_machine():
    demo = step_work(32, [(64, 256), (256, 256), (256, 10)])
    assert demo == 32 * 256 * 256 < SMALL_WORK
    assert choose_threads(demo, cores=64, load=0.0) == 1


def test_large_nets_get_the_free_cores_shared_between_processes():
    mnist = step_work(100, [(784, 800), (800, 800), (800, 10)])
    assert choose_threads(mnist, cores=2, load=0.0) == 2
    assert choose_threads(mnist, cores=2, load=1.0) == 1  # one core busy elsewhere
    assert choose_threads(mnist, cores=16, load=4.2, processes=2) == 6
    assert choose_threads(mnist, cores=2, load=7.0) == 1  # overloaded: still one


@given(
    work=st.integers(0, 10**10),
    cores=st.integers(1, 256),
    load=st.floats(0, 512),
    processes=st.integers(1, 64),
)
def test_threads_are_between_one_and_the_cores_per_process(work, cores, load, processes):
    n = choose_threads(work, cores=cores, load=load, processes=processes)
    assert 1 <= n <= max(1, cores // processes)


def test_bad_arguments():
    with pytest.raises(ValueError, match="processes must be >= 1, got 0"):
        choose_threads(SMALL_WORK, processes=0)
    with pytest.raises(ValueError, match="work must be >= 0, got -1"):
        choose_threads(-1)


def test_defaults_read_affinity_and_load():
    assert 1 <= available_cores() <= (os.cpu_count() or 1)
    assert choose_threads(SMALL_WORK) >= 1


def test_passive_wait_is_set_where_the_user_has_not_chosen():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    added = passive_wait_environment(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and "OMP_WAIT_POLICY" not in added
    assert env["GOMP_SPINCOUNT"] == "0" and env["KMP_BLOCKTIME"] == "0"


def test_cli_run_sets_passive_wait_before_torch_starts(tmp_path):
    """The workers and torch's own pool see the setting: it is in os.environ before torch."""
    code = (
        "import os, sys\n"
        "import dropkit_lab.cli\n"
        "import dropkit_lab.experiments\n"
        "def fake(*a, **k):\n"
        "    print(os.environ.get('OMP_WAIT_POLICY'))\n"
        "    raise SystemExit(0)\n"
        "dropkit_lab.experiments.run_experiment = fake\n"
        f"dropkit_lab.cli.main(['run', 'demo', '--out', {str(tmp_path)!r}])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in WAIT_ENVIRONMENT}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.stdout.strip() == "PASSIVE", proc.stderr
