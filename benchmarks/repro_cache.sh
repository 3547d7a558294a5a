#!/usr/bin/env bash
# The crash scenario of issue 12, on dropkit's C++ kernel cache: a partial rebuild, then later
# processes. None may crash or change a result. Each process prints its exit code.
#
# Adapted from the numba-cache crash reproduction of issue 12, where numba's on-disk cache, after
# a partial rebuild, made every later process die with SIGSEGV (rc=139). Here:
#  P1 builds the library into a fresh cache folder;
#  then the cache is left as an interrupted first compile or two processes compiling at once
#  could leave it: the library cut to half its size, its checksum file deleted, a half-written
#  build folder beside them;
#  P2 finds the damage, says so and rebuilds; P3 and P4 load from the cache;
#  then one byte in the middle of the library is flipped (same size, as a bad disk block would);
#  P5 rebuilds; P6 loads from the cache.
# Every process checks its dropout output against the reference backend's.
#
# Run from the project's root with the project's python on PATH (or PY=...) and dropkit
# importable (e.g. PYTHONPATH=src). Writes only to a temporary cache folder.
set -u
PY=${PY:-python}
C=$(mktemp -d)
trap 'rm -rf "$C"' EXIT
run() {
  DROPKIT_CACHE_DIR=$C PYTHONDONTWRITEBYTECODE=1 "$PY" -W always -c '
import torch
import dropkit
from dropkit import functional as DF
from dropkit.kernels import cpu
x = torch.ones(64, 16, 32, 32)
y = DF.dropout2d(x, 0.5, seed=7) + DF.dropout(x, 0.5, seed=8)
dropkit.set_backend("reference")
want = DF.dropout2d(x, 0.5, seed=7) + DF.dropout(x, 0.5, seed=8)
print("  same-as-reference=%s built=%s cpu-kernels=%s" % (
    torch.equal(y, want), cpu._state.built, cpu._state.lib is not None), flush=True)' 2>&1 |
    sed -e 's/^/  /' -e 's/^  *\(.*Warning: \)/  warning: /'
  echo "  rc=${PIPESTATUS[0]}"
}
echo "P1 fresh build:"; run
D=$(ls -d "$C"/cpu-*)
L="$D/libdropkit_cpu.so"
truncate -s $(( $(stat -c %s "$L") / 2 )) "$L"
rm -f "$L.sha256"
mkdir -p "$D/build-interrupted" && head -c 1000 "$L" > "$D/build-interrupted/dropkit_cpu.o"
echo "P2 after a partial rebuild (library cut short, checksum gone, build folder left):"; run
echo "P3 loads from the cache:"; run
echo "P4 loads from the cache:"; run
SIZE=$(stat -c %s "$L")
printf '\xff' | dd of="$L" bs=1 seek=$(( SIZE / 2 )) conv=notrunc status=none
echo "P5 after one byte of the library was flipped:"; run
echo "P6 loads from the cache:"; run
