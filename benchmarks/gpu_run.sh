#!/usr/bin/env bash
# dropkit's whole GPU check in one run (issue 18, item 4), at most 8 minutes on one GPU:
#   1. benchmarks/gpu.py         Triton vs reference bit check on the GPU, then 2^20..2^28
#                                float32/bfloat16 forward and forward+backward vs torch's CUDA
#                                dropout, bytes kept for backward, fused bias_dropout_add,
#                                channel and alpha dropout;
#   2. benchmarks/gpu_mlp_stack.py  bf16 training step of a 12-layer residual MLP stack (hidden
#                                1024, 16k tokens): no dropout / torch / dropkit / bias_dropout_add,
#                                step time and torch.cuda.max_memory_allocated;
#   3. python -m pytest -m cuda tests/cuda   every op and module on CUDA vs the CPU, bit for bit,
#                                and torch.compile on CUDA (the ensemble trainer's too);
#   4. dropkit run hinton2012-mnist --profile paper --device cuda --ensemble   the 2012 paper's
#                                protocol (3 configurations x 3 seeds, 3,000 epochs) as one stacked
#                                model, for what is left of the budget: checkpoints after every
#                                epoch, so the same command (the same OUT) carries on. Needs the
#                                MNIST folder: MNIST_DIR or $DROPKIT_DATA (else the part is left
#                                out); --cpu-check runs the smoke profile on the CPU.
# Parts run in this order (the figures first), each under its own time limit, all under one
# budget (GPU_RUN_BUDGET_S, default 470 s). Nothing is installed: it runs `python3` from PATH
# (or $PYTHON) with PYTHONPATH=src, and a missing package (pytest, triton, ...) is reported and
# its part skipped. Every figure goes to OUT/gpu_results.json; each part's log to OUT/*.log.
#
#   bash benchmarks/gpu_run.sh OUT [MNIST_DIR]              # on the GPU machine
#   bash benchmarks/gpu_run.sh --cpu-check OUT [MNIST_DIR]  # the script's own logic here: CPU,
#                                               # tiny sizes, TRITON_INTERPRET=1, tests CPU vs CPU
#
# Exit status: 0 when every part ran to its end (test failures are reported in the summary and
# the JSON, not in the status), 1 when a part crashed, timed out or was skipped, 2 on bad usage
# or no CUDA device (GPU mode).
set -u -o pipefail

MODE=gpu
if [ "${1:-}" = "--cpu-check" ]; then
    MODE=cpu
    shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash benchmarks/gpu_run.sh [--cpu-check] OUT_DIR [MNIST_DIR]" >&2
    exit 2
fi
DATA=${2:-${DROPKIT_DATA:-}}
if [ -n "$DATA" ] && [ ! -d "$DATA" ]; then
    echo "gpu_run.sh: the MNIST folder $DATA does not exist" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
cd "$ROOT"

PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
# Compiled kernels and the C++ CPU backend go to /tmp, not into OUT.
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/dropkit-gpu-run/triton}
export DROPKIT_CACHE_DIR=${DROPKIT_CACHE_DIR:-/tmp/dropkit-gpu-run/dropkit}
export PYTHONDONTWRITEBYTECODE=1
BUDGET=${GPU_RUN_BUDGET_S:-470}
START=$(date +%s)
STATUS=0

log() { echo "[gpu_run $(($(date +%s) - START))s] $*"; }

# min(the part's own limit, what is left of the budget less a reserve for the summary)
limit() {
    local own=$1 left
    left=$((BUDGET - ($(date +%s) - START) - 15))
    [ "$left" -lt "$own" ] && own=$left
    [ "$own" -lt 1 ] && own=1
    echo "$own"
}

# run NAME LIMIT CMD...: the part's output to OUT/NAME.log, its status and seconds to
# OUT/parts.tsv (124: killed at its time limit).
run() {
    local name=$1 seconds t0 rc
    seconds=$(limit "$2")
    shift 2
    log "$name: $* (limit ${seconds}s)"
    t0=$(date +%s)
    timeout --signal=TERM --kill-after=10 "$seconds" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" >>"$OUT/parts.tsv"
    log "$name: exit $rc after $(($(date +%s) - t0))s; last lines:"
    tail -n 8 "$OUT/$name.log" | sed 's/^/    /'
    # pytest's 1 means tests failed after running: reported in the summary, not in the status;
    # the paper protocol stopped at its time limit resumes (it is expected to, at 3,000 epochs)
    [ "$rc" -eq 0 ] || { [ "$name" = cuda_tests ] && [ "$rc" -eq 1 ]; } \
        || { [ "$name" = paper ] && [ "$rc" -eq 124 ]; } || STATUS=1
}

skip() {
    printf '%s\tskipped\t0\t%s\n' "$1" "$2" >>"$OUT/parts.tsv"
    log "$1: SKIPPED ($2)"
    STATUS=1
}

: >"$OUT/parts.tsv"
log "mode $MODE, python $(command -v "$PY" || echo "$PY: not found"), output $OUT"

# -- The environment ------------------------------------------------------------------------
if ! "$PY" -c 'import torch' 2>/dev/null; then
    log "torch is not importable by $PY: nothing can run"
    exit 2
fi
if [ "$MODE" = gpu ]; then
    "$PY" -c 'import torch,triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())' \
        2>&1 | tee "$OUT/env.txt"
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        log "no CUDA device (torch.cuda.is_available() is False); use --cpu-check on a CPU"
        exit 2
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi -L >>"$OUT/env.txt" 2>&1
else
    "$PY" -c 'import torch,triton; print(torch.__version__, triton.__version__, "cpu (--cpu-check)")' \
        2>&1 | tee "$OUT/env.txt"
fi
# One process imports them all (torch's import dominates).
MISSING=$("$PY" -c '
import importlib
missing = []
for module in ("triton", "pytest", "hypothesis", "numpy"):
    try:
        importlib.import_module(module)
    except Exception:
        missing.append(module)
print(" ".join(missing))
' 2>/dev/null)
MISSING=${MISSING:+ $MISSING}
echo "missing:${MISSING:- none}" | tee -a "$OUT/env.txt"
# dropkit's CPU kernels (the C++ library, built here on first use, before anything is timed):
# "cpu", or "reference" when the build failed (its warning names why).
"$PY" -c 'import dropkit; print("dropkit CPU backend:", dropkit.backend())' 2>&1 \
    | tail -n 3 | tee -a "$OUT/env.txt"
have() { case " $MISSING " in *" $1 "*) return 1 ;; esac; return 0; }
have numpy || log "numpy is missing: dropkit imports it (dropkit.rng), so every part will fail"
have hypothesis || log "hypothesis is missing: not needed here (tests/cuda does not use it)"

# -- 1. benchmarks/gpu.py ----------------------------------------------------------------------
if ! have triton; then
    skip gpu_bench "triton is missing"
elif [ "$MODE" = gpu ]; then
    run gpu_bench 150 "$PY" benchmarks/gpu.py --json "$OUT/gpu_bench.json"
else
    run gpu_bench 150 "$PY" benchmarks/gpu.py --check --json "$OUT/gpu_bench.json"
fi

# -- 2. benchmarks/gpu_mlp_stack.py ------------------------------------------------------------
if [ "$MODE" = gpu ]; then
    run mlp_stack 100 "$PY" benchmarks/gpu_mlp_stack.py --json "$OUT/mlp_stack.json"
else
    run mlp_stack 100 "$PY" benchmarks/gpu_mlp_stack.py --cpu-check --json "$OUT/mlp_stack.json"
fi

# -- 3. the GPU tests --------------------------------------------------------------------------
# -v: a test killed at the time limit still leaves the names of those that ran in the log.
PYTEST_ARGS=(-m pytest -m cuda tests/cuda -v -p no:cacheprovider --durations=10
    --junitxml="$OUT/cuda_tests.xml")
if ! have pytest; then
    skip cuda_tests "pytest is missing (carry a wheel: pip install --no-index pytest*.whl)"
elif [ "$MODE" = gpu ]; then
    run cuda_tests 280 "$PY" "${PYTEST_ARGS[@]}"
else
    # The same test bodies on CPU tensors, the second run through the Triton backend under the
    # interpreter (tests/cuda: DROPKIT_CUDA_SELF_CHECK=triton): checks the tests, not CUDA.
    run cuda_tests 280 env DROPKIT_CUDA_SELF_CHECK=triton "$PY" "${PYTEST_ARGS[@]}"
fi

# -- 4. The 2012 paper's protocol with the ensemble trainer ------------------------------------
if [ -z "$DATA" ]; then
    log "paper: left out (no MNIST folder: pass MNIST_DIR or set DROPKIT_DATA)"
elif [ "$MODE" = gpu ]; then
    run paper 600 "$PY" -m dropkit_lab run hinton2012-mnist --profile paper --device cuda \
        --ensemble --data-dir "$DATA" --out "$OUT/paper" --quiet
else
    run paper 120 "$PY" -m dropkit_lab run hinton2012-mnist --profile smoke --ensemble \
        --data-dir "$DATA" --out "$OUT/paper" --quiet
fi

# -- Every figure in one file, and the summary -------------------------------------------------
"$PY" - "$OUT" "$MODE" "$(($(date +%s) - START))" <<'EOF'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, mode, elapsed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
results = {"mode": mode, "elapsed_s": elapsed, "env": (out / "env.txt").read_text().strip()}
parts = {}
for line in (out / "parts.tsv").read_text().splitlines():
    name, rc, seconds, *why = line.split("\t")
    parts[name] = {"exit": rc, "seconds": int(seconds), **({"why": why[0]} if why else {})}
results["parts"] = parts
for name in ("gpu_bench", "mlp_stack"):
    path = out / f"{name}.json"
    results[name] = json.loads(path.read_text()) if path.exists() else None

tests = None
xml = out / "cuda_tests.xml"
if xml.exists():
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    failed = []
    for case in suite.iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            message = (bad.get("message") or "").splitlines()
            failed.append({"test": f"{case.get('classname')}::{case.get('name')}",
                           "message": message[0][:300] if message else ""})
    tests = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    tests["time_s"] = float(suite.get("time", 0))
    tests["failed"] = failed
elif (out / "cuda_tests.log").exists():  # killed before the report: count what the log shows
    log = (out / "cuda_tests.log").read_text()
    tests = {"incomplete": True, "passed": log.count(" PASSED"),
             "failed_or_error": log.count(" FAILED") + log.count(" ERROR")}
results["cuda_tests"] = tests
paper_log = out / "paper.log"
results["paper_log_tail"] = (
    paper_log.read_text(errors="replace").splitlines()[-20:] if paper_log.exists() else None
)
(out / "gpu_results.json").write_text(json.dumps(results, indent=1))

print("\n== summary ==")
print(results["env"])
for name, part in parts.items():
    print(f"{name}: exit {part['exit']} in {part['seconds']} s {part.get('why', '')}")
bench = results["gpu_bench"]
if bench:
    print(f"gpu.py: Triton vs reference on the device: {bench['bit_failures'] or 'bit-identical'}; "
          f"public API runs Triton: {bench['public_api_runs_triton']}")
    for verdict in bench.get("verdicts", []):
        print("  " + verdict)
mlp = results["mlp_stack"]
if mlp:
    med = mlp["median_step_s"]
    print("MLP stack step (ms): " + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in med.items()))
    for verdict in mlp["verdicts"]:
        print("  " + verdict)
if tests:
    print(f"cuda tests: {json.dumps({k: v for k, v in tests.items() if k != 'failed'})}")
    for f in tests.get("failed", []):
        print(f"  FAILED {f['test']}: {f['message']}")
if results["paper_log_tail"] is not None:
    state = parts.get("paper", {}).get("exit")
    print(f"paper protocol (exit {state}; 124: stopped at its time limit, the same command "
          "resumes):")
    for line in results["paper_log_tail"][-8:]:
        print("  " + line)
print(f"total {elapsed} s; every figure in {out / 'gpu_results.json'}")
EOF
[ $? -eq 0 ] || STATUS=1
exit $STATUS
