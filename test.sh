#!/usr/bin/env bash
# Set up (once: a venv in .venv with torch 2.13.0 CPU and dropkit with the extras below) and run
# the checks: ruff check, ruff format --check, then the test suite. Exit status: 0 only when all
# pass. Arguments go to pytest (e.g. `bash test.sh -x tests/nn`).
set -euo pipefail
cd "$(dirname "$0")"
# What the tests need; add an extra here (and in pyproject.toml) when tests need more.
EXTRAS=experiments,dev
# shellcheck source=tools/bootstrap.sh
source tools/bootstrap.sh
dropkit_bootstrap "$EXTRAS"
bin="${DROPKIT_VENV:-$PWD/.venv}/bin"
status=0
"$bin/ruff" check src tests benchmarks || status=1
"$bin/ruff" format --check src tests benchmarks || status=1
# pytest exits 5 when it collected no test: a failure here too.
"$bin/python" -m pytest -q "$@" || status=1
exit "$status"
