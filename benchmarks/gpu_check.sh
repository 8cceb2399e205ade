#!/usr/bin/env bash
# The accelerator check in one command, for a lent GPU machine (H200: jax 0.11 + CUDA plugin, flax, optax,
# orbax-checkpoint, chex, pytest present; ml_collections, grain and their missing needs travel as wheels).
# Writes $OUT/gpu_check.md and $OUT/gpu_check.json (benchmarks/gpu_check.py); about 6-8 minutes on an H200.
#
# Prepared here, once, from the repository root (benchmarks/README.md, "gpu_check"):
#   bash benchmarks/gpu_check.sh --prepare     # wheels -> .whl/, Fashion-MNIST -> .gpu_data/ (both git-ignored)
# then on the machine (the device tool's run, carry [".whl", ".gpu_data"], timeout 600):
#   bash benchmarks/gpu_check.sh
# and on CPU, in seconds (what tests/project/benchmarks_test.py runs):
#   bash benchmarks/gpu_check.sh --cpu-dry-run
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=benchmarks/gpu_wheels.txt

if [[ "${1:-}" == "--prepare" ]]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
  grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo /.gpu_data/ >> "$(git rev-parse --git-path info/exclude)"
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl -r "$WHEELS" || exit 1
  mkdir -p .gpu_data/fashion-mnist
  cp "${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"/*-ubyte.gz .gpu_data/fashion-mnist/ || exit 1
  du -sh .whl .gpu_data
  exit 0
fi

if [[ -d .whl ]] && ls .whl/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
DATA=${GPU_CHECK_DATA:-$([[ -d .gpu_data/fashion-mnist ]] && echo .gpu_data/fashion-mnist || echo /usr/share/datasets/fashion-mnist)}
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
if [[ "${1:-}" == "--cpu-dry-run" ]]; then
  JAX_PLATFORMS=cpu "$PY" -m benchmarks.gpu_check --cpu-dry-run --data-dir "$DATA" --out "$OUT" "${@:2}"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia_smi.csv" 2>&1
  timeout 570 "$PY" -m benchmarks.gpu_check --data-dir "$DATA" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
fi
