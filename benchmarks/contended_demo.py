"""``dropkit run demo`` alone and beside one process spinning on the CPU: the slowdown a busy
second process causes (issue 10's target: at most 1.5x; before the thread choice of
:mod:`dropkit_lab.engine.threads` it was 7.1x on an idle 2-core machine).

Each variant is timed alone, then beside ``python -c "while True: pass"``, one after the other in
one run of this script, each in a fresh output folder (nothing skipped); the script prints both
wall times, their ratio and the 1-minute load average seen before each. Variants:

- ``dropkit``: the runner as shipped (threads by work and load, OpenMP threads sleep when idle);
- ``omp1``: the same with ``OMP_NUM_THREADS=1`` (the issue's 2.9x case);
- ``spin``: OpenMP threads spin while they wait (``OMP_WAIT_POLICY=ACTIVE``), as before.

    python benchmarks/contended_demo.py                       # quick profile, 1 seed: minutes
    python benchmarks/contended_demo.py --profile smoke --variants dropkit omp1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

VARIANTS = {
    "dropkit": {},
    "omp1": {"OMP_NUM_THREADS": "1"},
    "spin": {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "30000000000"},
}


def timed_run(profile: str, seeds: int, env: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "dropkit_lab", "run", "demo", "--profile", profile]
        command += ["--seeds", str(seeds), "--out", out, "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(
            command,
            check=True,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "paper"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["dropkit"], choices=list(VARIANTS))
    args = parser.parse_args()
    print(f"dropkit run demo --profile {args.profile} --seeds {args.seeds}; {os.cpu_count()} CPUs")
    print(f"{'variant':14s} {'alone (s)':>10s} {'beside spinner (s)':>19s} {'ratio':>6s}  load")
    for name in args.variants:
        env = VARIANTS[name]
        load_alone = os.getloadavg()[0]
        alone = timed_run(args.profile, args.seeds, env)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            load_busy = os.getloadavg()[0]
            busy = timed_run(args.profile, args.seeds, env)
        finally:
            spinner.kill()
            spinner.wait()
        print(
            f"{name:14s} {alone:10.1f} {busy:19.1f} {busy / alone:5.2f}x  "
            f"{load_alone:.1f} / {load_busy:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
