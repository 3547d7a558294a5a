#!/usr/bin/env bash
# Run a pytest selection under each end of dropkit's declared torch range and print, for each end,
# torch's version and the result.
#
#   tools/torch_range.sh [PYTEST ARGS...]      default: tests/kernels
#
# The oldest end is the project's venv ($DROPKIT_VENV, default <clone>/.venv; torch 2.13.0 as
# tools/bootstrap.sh installs it); the newest is the venv named by $DROPKIT_TORCH_NEWEST_VENV
# (e.g. one with `pip install torch` resolving 2.14.x). An end whose venv is missing is skipped
# with a line saying so. Each end builds its C++ libraries in its own cache folder (the cache key
# includes torch's version anyway). Exit status: 0 when every end that ran passed.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ "$#" -gt 0 ] || set -- tests/kernels
status=0
ran=0
for end in "oldest:${DROPKIT_VENV:-$root/.venv}" "newest:${DROPKIT_TORCH_NEWEST_VENV:-}"; do
    label="${end%%:*}"
    venv="${end#*:}"
    if [ -z "$venv" ]; then
        echo "torch-range: $label end skipped: DROPKIT_TORCH_NEWEST_VENV is not set"
        continue
    fi
    python="$venv/bin/python"
    if [ ! -x "$python" ]; then
        echo "torch-range: $label end skipped: no venv at $venv ($python missing)"
        continue
    fi
    version="$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null)" || {
        echo "torch-range: $label end skipped: $python cannot import torch"
        continue
    }
    echo "torch-range: $label end: torch $version ($venv)"
    began=$(date +%s)
    PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" "$python" -m pytest -q -p no:cacheprovider "$@"
    rc=$?
    ran=$((ran + 1))
    if [ "$rc" -eq 0 ]; then result=passed; else result="FAILED (pytest exit $rc)"; status=1; fi
    echo "torch-range: $label end: torch $version: $result in $(( $(date +%s) - began )) s"
done
[ "$ran" -gt 0 ] || { echo "torch-range: no end of the range could run"; status=1; }
exit "$status"
