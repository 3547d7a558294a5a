#!/usr/bin/env bash
# Set up (once: a venv in .venv with torch 2.13.0 CPU and dropkit[experiments]) and run the demo:
# four regularizers on the embedded 8x8 digits, no download needed. Arguments go to `dropkit run`
# (e.g. `bash demo.sh --seeds 1`). Running it again reuses the venv and the finished runs.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=tools/bootstrap.sh
source tools/bootstrap.sh
dropkit_bootstrap experiments
exec "${DROPKIT_VENV:-$PWD/.venv}/bin/dropkit" run demo "$@"
