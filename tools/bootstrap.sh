# Shared by demo.sh and test.sh (sourced, not run): make or reuse the virtual environment
# .venv in the clone and install dropkit into it with the extras named by the caller.
#
#   dropkit_bootstrap EXTRAS    e.g. dropkit_bootstrap experiments,dev
#
# Needs nothing but python3 >= 3.10. Steps, each skipped when already done:
#   1. .venv: `python3 -m venv`; where Debian's python3 lacks ensurepip (package python3-venv not
#      installed) `python3 -m venv --without-pip` and pip bootstrapped from its wheel on PyPI
#      (sha256 checked), or a message naming the apt package when that fails too;
#   2. torch 2.13.0, once, with pip's progress shown (a bare `torch` requirement on Linux pulls
#      PyPI's 527 MB wheel plus CUDA packages, several GB; DROPKIT_TORCH_INDEX can name the CPU
#      index, ~200 MB);
#   3. `pip install -e .[EXTRAS]`.
# A stamp (.venv/.dropkit-stamp: pyproject.toml's hash, the extras, the torch pin) makes a re-run
# with nothing changed skip pip altogether.
# Environment: PYTHON (default python3), DROPKIT_VENV (default <clone>/.venv),
# DROPKIT_TORCH_INDEX (an extra index for torch, e.g. https://download.pytorch.org/whl/cpu, whose
# 2.13.0+cpu pip prefers to PyPI's Linux build with CUDA; unset: pip's configured index alone),
# DROPKIT_PIP_INDEX (the index pip is bootstrapped from, default https://pypi.org/simple).

DROPKIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DROPKIT_TORCH="torch==2.13.0"

_say() { printf 'dropkit setup: %s\n' "$*" >&2; }

_dropkit_make_venv() {
    local python="$1" venv="$2"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        _say "$python is missing or older than 3.10; install Python >= 3.10 (or set PYTHON=...)"
        return 1
    fi
    if "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        "$python" -m venv "$venv"
        return
    fi
    local pkg
    pkg="python3-venv (or python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv)"
    if ! "$python" -c 'import venv' 2>/dev/null; then
        _say "$python has no venv module: install it with: sudo apt install $pkg"
        return 1
    fi
    _say "$python has no ensurepip (Debian without $pkg): making the venv without pip and" \
        "fetching pip's wheel from ${DROPKIT_PIP_INDEX:-https://pypi.org/simple}"
    "$python" -m venv --without-pip "$venv"
    if ! "$venv/bin/python" - "${DROPKIT_PIP_INDEX:-https://pypi.org/simple}" <<'PY'
import hashlib, json, os, subprocess, sys, tempfile, urllib.request

index = sys.argv[1].rstrip("/")
req = urllib.request.Request(
    f"{index}/pip/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
)
with urllib.request.urlopen(req, timeout=30) as r:
    files = json.load(r)["files"]
wheels = [f for f in files if f["filename"].endswith("-py3-none-any.whl") and not f.get("yanked")]
best = max(wheels, key=lambda f: tuple(int(p) for p in f["filename"].split("-")[1].split(".")[:3]
                                       if p.isdigit()))
with urllib.request.urlopen(best["url"], timeout=120) as r:
    data = r.read()
if hashlib.sha256(data).hexdigest() != best["hashes"]["sha256"]:
    sys.exit(f"{best['filename']}: sha256 mismatch")
path = os.path.join(tempfile.mkdtemp(), best["filename"])
with open(path, "wb") as f:
    f.write(data)
# A wheel is a zip archive Python can run pip from: pip installs itself from its own wheel.
subprocess.run([sys.executable, f"{path}/pip", "install", "--quiet", "--no-index", path], check=True)
PY
    then
        rm -rf "$venv"
        _say "could not bootstrap pip; install the venv support with: sudo apt install $pkg"
        return 1
    fi
}

_dropkit_install_torch() {
    local py="$1"
    if "$py" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' \
        2>/dev/null; then
        return
    fi
    # Only the indexes pip is configured with, plus DROPKIT_TORCH_INDEX when the user names one:
    # the set-up contacts nothing else.
    local extra=()
    if [ -n "${DROPKIT_TORCH_INDEX:-}" ]; then
        extra=(--extra-index-url "$DROPKIT_TORCH_INDEX")
    fi
    # Sizes measured for torch 2.13.0 on Linux x86-64: the CPU index's wheel is about 200 MB;
    # PyPI's is a 527 MB wheel that pulls in the CUDA packages, several GB in all (a venv with
    # only the library came to 5.5 GB).
    if [ -n "${DROPKIT_TORCH_INDEX:-}" ]; then
        _say "installing $DROPKIT_TORCH once from $DROPKIT_TORCH_INDEX (about 200 MB for the" \
            "CPU build; more if that index has no CPU build); pip shows its progress"
    else
        _say "installing $DROPKIT_TORCH once from pip's index: on Linux PyPI's build is a 527 MB" \
            "wheel plus CUDA packages, several GB in all (for the ~200 MB CPU build set" \
            "DROPKIT_TORCH_INDEX=https://download.pytorch.org/whl/cpu); pip shows its progress"
    fi
    # Not --quiet: this download takes minutes, and pip's progress bar says how far it is.
    "$py" -m pip install --progress-bar on "${extra[@]}" "$DROPKIT_TORCH" >&2
}

dropkit_bootstrap() {
    local extras="$1"
    local python="${PYTHON:-python3}" venv="${DROPKIT_VENV:-$DROPKIT_ROOT/.venv}"
    local stamp want
    if [ ! -x "$venv/bin/python" ]; then
        _say "creating the virtual environment $venv"
        _dropkit_make_venv "$python" "$venv" || return 1
    fi
    want="$("$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
        "$DROPKIT_ROOT/pyproject.toml") $extras $DROPKIT_TORCH"
    stamp="$venv/.dropkit-stamp"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    _dropkit_install_torch "$venv/bin/python" || return 1
    _say "installing dropkit[$extras] (editable) into $venv"
    "$venv/bin/python" -m pip install --quiet -e "$DROPKIT_ROOT[$extras]" || return 1
    printf '%s' "$want" >"$stamp"
}
