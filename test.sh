#!/usr/bin/env bash
# Set up (once: a venv in .venv with torch 2.13.0 CPU and dropkit with the extras below) and run
# the checks: ruff check, ruff format --check, then the test suite. Exit status: 0 only when all
# pass. Arguments go to pytest (e.g. `bash test.sh -x tests/nn`). The fast lane by default: tests
# marked slow (the docs build and its browser test, long training runs, the GPU script's CPU
# check) run too with DROPKIT_TESTS=all.
set -euo pipefail
cd "$(dirname "$0")"
# What the tests need; add an extra here (and in pyproject.toml) when tests need more.
EXTRAS=experiments,dev,docs
# shellcheck source=tools/bootstrap.sh
source tools/bootstrap.sh
dropkit_bootstrap "$EXTRAS"
bin="${DROPKIT_VENV:-$PWD/.venv}/bin"
# The peers that tests/compat and benchmarks/family.py compare against. Their dropout-family ops are
# plain Python files the tests load directly, so none of their dependencies is needed (--no-deps).
if ! "$bin/python" -m pip show --quiet timm torchvision >/dev/null 2>&1; then
    "$bin/python" -m pip install --quiet --no-deps "timm==1.0.31" "torchvision==0.28.0"
fi
marks=(-m "not slow")
if [ "${DROPKIT_TESTS:-}" = all ]; then
    marks=()
fi
# The docs' browser test (tests/docs/test_browser.py, slow) opens the built site in headless
# Chromium and skips without it. As root with apt-get, install Debian's package once.
if [ "${#marks[@]}" = 0 ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium (apt-get) for the docs' browser test" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >/dev/null 2>&1; then
        echo "test.sh: could not install chromium; the docs' browser test will skip" >&2
    fi
fi
status=0
"$bin/ruff" check src tests benchmarks tools docs/scripts || status=1
"$bin/ruff" format --check src tests benchmarks tools docs/scripts || status=1
# pytest exits 5 when it collected no test: a failure here too.
"$bin/python" -m pytest -q "${marks[@]}" "$@" || status=1
exit "$status"
