#!/usr/bin/env bash
# Creates or updates .venv with the project's pinned stack. Idempotent: when the requirement
# files are unchanged since the last successful run, it only verifies the stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PIP_VERSION="24.3.1"
STAMP="$VENV/.setup-stamp"
INPUTS=(requirements/core.txt requirements/dev.txt requirements/nodeps.txt requirements/constraints.txt setup.py scripts/setup_env.sh)

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

digest=$(cat "${INPUTS[@]}" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$digest" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

python=$(find_python)
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $python"
  "$python" -m venv "$VENV"
fi
rm -f "$STAMP"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet "pip==$PIP_VERSION"
echo "setup: installing the core stack (TensorFlow, TFRS, ScaNN, Beam; about 3.5 GB on first run)"
"${pip[@]}" install --progress-bar off -c requirements/constraints.txt \
  -r requirements/core.txt -r requirements/dev.txt
echo "setup: installing the TFX family without dependencies"
"${pip[@]}" install --quiet --no-deps -c requirements/constraints.txt -r requirements/nodeps.txt
echo "setup: installing tfrs_llmrec (editable)"
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e .
echo "$digest" > "$STAMP"
echo "setup: done in $(( $(date +%s) - start ))s; run '$VENV/bin/llmrec doctor' to verify"
