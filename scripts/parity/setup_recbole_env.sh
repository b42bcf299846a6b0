#!/usr/bin/env bash
# Creates or updates .parity-venv, the scratch environment RecBole runs in for `make parity`
# (RecBole and PyTorch are never dependencies of tfrs_llmrec). Idempotent: when the pins are
# unchanged since the last successful run, it only checks the stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${PARITY_VENV:-.parity-venv}"
PIP_VERSION="24.3.1"
STAMP="$VENV/.setup-stamp"
INPUTS=(scripts/parity/requirements.txt scripts/parity/setup_recbole_env.sh)

digest=$(cat "${INPUTS[@]}" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$digest" ]; then
  echo "parity setup: $VENV is up to date"
  exit 0
fi

python="${PYTHON:-python3.11}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "parity setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  echo "parity setup: creating $VENV with $python"
  "$python" -m venv "$VENV"
fi
rm -f "$STAMP"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet "pip==$PIP_VERSION"
# Every package is pinned in the file, so nothing is resolved: recbole's unused hard requirements
# (ray among them) stay out, and torch==2.13.0 is the CPU build on this machine's disk. Where no
# such file lies, point pip at PyTorch's CPU index (PIP_EXTRA_INDEX_URL) or it takes the CUDA build.
echo "parity setup: installing RecBole 1.2.1 and PyTorch 2.13.0 (CPU) into $VENV"
"${pip[@]}" install --progress-bar off --no-deps -r scripts/parity/requirements.txt
"$VENV/bin/python" -c 'import recbole.trainer, recbole.data, recbole.model.general_recommender, torch, numpy
print(f"parity setup: recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}")'
echo "$digest" > "$STAMP"
echo "parity setup: done in $(( $(date +%s) - start ))s"
