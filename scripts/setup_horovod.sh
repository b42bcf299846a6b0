#!/usr/bin/env bash
# Builds Horovod into $VENV (the second half of `make setup`, after scripts/setup_env.sh).
# Horovod 0.28.1 is the last release and ships only as an sdist that no longer builds against
# TensorFlow >= 2.18; we download it, check its hash, apply our own small patch
# (third_party/horovod/) and compile it with Gloo (no MPI, no PyTorch/MXNet).
# Idempotent: when the patch, this script and the installed TensorFlow are unchanged since the
# last successful run, it only checks the stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
HOROVOD_VERSION="0.28.1"
HOROVOD_SDIST_SHA256="92a43f5a94c43907a56805bad15f19700c62ffc83b7ca483f9e104e229f67ef0"
CMAKE_VERSION="3.31.6"  # gloo's CMakeLists needs CMake < 4 (cmake_minimum_required 2.8.12)
PATCH_FILE="third_party/horovod/horovod-${HOROVOD_VERSION}-tf2.20.patch"
SELF="scripts/setup_horovod.sh"
STAMP="$VENV/.horovod-stamp"
LOG="$VENV/.horovod-build.log"
PY="$VENV/bin/python"

# tf.keras must be tf_keras (Keras 2) wherever TensorFlow gets imported: build, checks, runs.
export TF_USE_LEGACY_KERAS=1

if [ ! -x "$PY" ]; then
  echo "setup-horovod: $PY not found; run 'make setup' first" >&2
  exit 1
fi

# The compiled ops are tied to the TensorFlow they were built against: a changed TensorFlow
# (read from its dist-info name, without importing it) triggers a rebuild too.
tf_dist=$(cd "$VENV" && ls -d lib/python*/site-packages/tensorflow-*.dist-info 2>/dev/null || true)
digest=$({ cat "$PATCH_FILE" "$SELF"; echo "$tf_dist"; } | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$digest" ] &&
   "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("horovod") is None)'; then
  echo "setup-horovod: up to date"
  exit 0
fi
if [ -z "$tf_dist" ]; then
  echo "setup-horovod: TensorFlow is not installed in $VENV; run 'make setup' first" >&2
  exit 1
fi
for tool in g++ make patch tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup-horovod: '$tool' is required" >&2; exit 1; }
done

start=$(date +%s)
rm -f "$STAMP"
venv_abs=$(cd "$VENV" && pwd)
pip=("$PY" -m pip --disable-pip-version-check)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/setup-horovod.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "setup-horovod: installing build tools (cmake==$CMAKE_VERSION) and Horovod's runtime requirements"
"${pip[@]}" install --quiet -c requirements/constraints.txt "cmake==$CMAKE_VERSION" \
  cloudpickle psutil pyyaml packaging

echo "setup-horovod: downloading the horovod==$HOROVOD_VERSION sdist"
"${pip[@]}" download --quiet --no-deps --no-binary :all: --no-build-isolation \
  "horovod==$HOROVOD_VERSION" -d "$tmp"
sdist="$tmp/horovod-$HOROVOD_VERSION.tar.gz"
echo "$HOROVOD_SDIST_SHA256  $sdist" | sha256sum --check --quiet - || {
  echo "setup-horovod: sha256 mismatch for $sdist (expected $HOROVOD_SDIST_SHA256)" >&2
  exit 1
}
tar -xzf "$sdist" -C "$tmp"
src="$tmp/horovod-$HOROVOD_VERSION"
patch -p1 --batch --forward --quiet -d "$src" -i "$PWD/$PATCH_FILE"

# Build configuration: TensorFlow + Gloo; MPI, PyTorch and MXNet off.
export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
export HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=gloo
export HOROVOD_CMAKE="$venv_abs/bin/cmake"
export MAKEFLAGS="${MAKEFLAGS:--j$(nproc)}"
# NCCL GPU operations: a HOROVOD_GPU_OPERATIONS set by the caller wins (empty means CPU only).
# Otherwise only when nvcc exists, its CUDA major version matches the one TensorFlow was built
# with, and nccl.h can be found; anything else would fail to build or to load.
if [ -z "${HOROVOD_GPU_OPERATIONS+set}" ] && command -v nvcc >/dev/null 2>&1; then
  nvcc_cuda=$(nvcc --version | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p')
  tf_cuda=$("$PY" -c 'import tensorflow as tf; print(tf.sysconfig.get_build_info().get("cuda_version", ""))' 2>/dev/null || true)
  nccl_h=""
  for dir in "${HOROVOD_NCCL_INCLUDE:-}" "${HOROVOD_NCCL_HOME:+$HOROVOD_NCCL_HOME/include}" \
             "${CUDA_HOME:+$CUDA_HOME/include}" /usr/local/cuda/include /usr/include; do
    if [ -n "$dir" ] && [ -f "$dir/nccl.h" ]; then nccl_h="$dir/nccl.h"; break; fi
  done
  if [ -n "$tf_cuda" ] && [ "${nvcc_cuda%%.*}" = "${tf_cuda%%.*}" ] && [ -n "$nccl_h" ]; then
    export HOROVOD_GPU_OPERATIONS=NCCL
  else
    echo "setup-horovod: nvcc (CUDA ${nvcc_cuda:-?}) found, but TensorFlow was built with CUDA" \
         "${tf_cuda:-none} and nccl.h is ${nccl_h:-missing}: building CPU (Gloo) ops only;" \
         "set HOROVOD_GPU_OPERATIONS=NCCL to force a GPU build"
  fi
fi
if [ -z "${HOROVOD_GPU_OPERATIONS:-}" ]; then unset HOROVOD_GPU_OPERATIONS; fi

echo "setup-horovod: compiling horovod==$HOROVOD_VERSION (GPU ops: ${HOROVOD_GPU_OPERATIONS:-none};" \
     "about 4-8 minutes on 2 cores; log: $LOG)"
if ! "${pip[@]}" install -v --no-build-isolation --no-deps --no-cache-dir "$src" >"$LOG" 2>&1; then
  tail -n 60 "$LOG" >&2
  echo "setup-horovod: build failed; full log in $LOG" >&2
  exit 1
fi

echo "setup-horovod: checking the build"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
"$PY" -c "import horovod.tensorflow as hvd; hvd.init(); print(hvd.size())"
"$PY" -c "import horovod.tensorflow.keras"
"$VENV/bin/horovodrun" --check-build
echo "setup-horovod: (0.28.1's --check-build ticks PyTorch whenever the horovod.torch Python" \
     "package imports; no PyTorch ops were built)"
echo "$digest" > "$STAMP"
echo "setup-horovod: done in $(( $(date +%s) - start ))s"
