#!/usr/bin/env bash
# First-use cost of the CPU backend candidates: wall time of a fresh process making one first
# call, with an empty cache and again with the cache it left. Run from anywhere; PY selects the
# python (default: python). OLD_SRC, if set, is the src/ folder of dropkit commit 757a4e7 (the numba
# backend: git archive 757a4e7 src | tar -x -C /tmp/old; OLD_SRC=/tmp/old/src), measured too.
# Writes only to temporary cache folders.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python}
T() {
  local start end rc
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; rc=$?; end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc) s rc=$rc"
}
C=$(mktemp -d); N=$(mktemp -d); I=$(mktemp -d)
trap 'rm -rf "$C" "$N" "$I"' EXIT
BASE='import torch, dropkit'
CPP='import torch; from dropkit.kernels import cpu
cpu.apply_keep_mask(torch.ones(10), 1, 0, 0, 1.0); assert cpu.available()'
NB='import torch; from dropkit.kernels import numba_cpu
numba_cpu.apply_keep_mask(torch.ones(10), 1, 0, 0, 1.0)'
IND='import torch; from dropkit.kernels import reference
f = torch.compile(lambda t: reference.apply_keep_mask(t, 1, 0, 2**31, 2.0)); f(torch.ones(1024))'
echo -n "import only: "; PYTHONPATH=src T "$PY" -c "$BASE"
echo -n "C++ cold: "; PYTHONPATH=src DROPKIT_CACHE_DIR=$C T "$PY" -c "$CPP"
echo -n "C++ warm: "; PYTHONPATH=src DROPKIT_CACHE_DIR=$C T "$PY" -c "$CPP"
if [ -n "${OLD_SRC:-}" ]; then
  echo -n "numba cold: "; PYTHONPATH=$OLD_SRC NUMBA_CACHE_DIR=$N T "$PY" -c "$NB"
  echo -n "numba warm: "; PYTHONPATH=$OLD_SRC NUMBA_CACHE_DIR=$N T "$PY" -c "$NB"
fi
echo -n "Inductor cold: "; PYTHONPATH=src TORCHINDUCTOR_CACHE_DIR=$I T "$PY" -c "$IND"
echo -n "Inductor warm: "; PYTHONPATH=src TORCHINDUCTOR_CACHE_DIR=$I T "$PY" -c "$IND"
