#!/usr/bin/env bash
# Create benchmarks/.venv-mace: a separate virtual environment with mace-torch, for the speed
# comparison in benchmarks/run.py. mace-torch pins e3nn 0.4.4, which attnmace cannot use, so it
# must never be installed into the environment that runs attnmace.
#
#   bash benchmarks/mace_env.sh            # creates (or re-checks) the venv
#   MACE_VERSION=0.3.14 bash benchmarks/mace_env.sh
#   TORCH_VERSION=2.13.0 ...               # the torch pinned in the venv (default: the system one)
#
# torch is installed FIRST and pinned, so that mace-torch's unpinned "torch" requirement is
# already satisfied (an unpinned install would pull a CUDA build and its GB of packages).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${MACE_VENV:-$here/.venv-mace}"
python="${PYTHON:-python3}"
torch_version="${TORCH_VERSION:-$("$python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || echo 2.13.0)}"
mace_version="${MACE_VERSION:-}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip >/dev/null 2>&1 || true
echo "installing torch==$torch_version"
"${pip[@]}" install -q "torch==$torch_version"
spec="mace-torch${mace_version:+==$mace_version}"
echo "installing $spec (torch pinned to the installed $torch_version)"
# the constraint keeps pip from replacing torch while resolving mace-torch's requirements
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$venv/bin/python" -c 'import torch; print("torch==" + torch.__version__)' >"$constraints"
"${pip[@]}" install -q -c "$constraints" "$spec"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
import torch, e3nn, mace
from mace import modules  # noqa: F401  (the part the worker needs)
from mace.calculators import MACECalculator  # noqa: F401
print("OK: mace-torch", md.version("mace-torch"), "| torch", torch.__version__, "| e3nn", e3nn.__version__)
PY
