#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA device: the CUDA tests (tests/cuda) and the GPU
# benchmark (bench/bench_gpu.py), each one's output also written under $OUT (else ./gpu-check).
#
#   bash bench/gpu_check.sh fetch    on a development machine with the project's .venv: the wheels, for
#                                    the GPU machine's Python (GPU_PYTHON_VERSION, default 3.12), of what
#                                    the tests and the benchmark import and a CUDA image of torch may
#                                    lack (pydantic and its parts, redis-py), into .whl/ (git-ignored)
#   bash bench/gpu_check.sh          on the GPU machine, .whl/ copied beside the checkout
#
# Variables: GPU_CHECK_ROUNDS (bench_gpu's rounds, default 3).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
PACKAGES=(pydantic pydantic-core pydantic-settings annotated-types typing-inspection typing-extensions python-dotenv redis)

if [ "${1:-}" = fetch ]; then
  py=${PYTHON:-.venv/bin/python}
  pins=()
  for name in "${PACKAGES[@]}"; do
    version=$("$py" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [ -n "$version" ] || { echo "$name is not installed in $py's environment" >&2; exit 1; }
    pins+=("$name==$version")
  done
  mkdir -p "$WHEELS"
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "${pins[@]}" || exit 1
  grep -qx "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >>.git/info/exclude
  ls "$WHEELS"
  exit 0
fi

out=${OUT:-gpu-check}
mkdir -p "$out"
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/backdrop-site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/backdrop-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  python3 -c 'import torchvision; print("torchvision", torchvision.__version__)' || echo "torchvision: does not import"
} 2>&1 | tee "$out/environment.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/cuda 2>&1 | tee "$out/cuda-tests.txt"
tests=${PIPESTATUS[0]}
timeout 420 python3 bench/bench_gpu.py --device cuda --rounds "${GPU_CHECK_ROUNDS:-3}" 2>&1 | tee "$out/bench-gpu.txt"
bench=${PIPESTATUS[0]}
echo "tests/cuda: exit $tests; bench/bench_gpu.py: exit $bench" | tee -a "$out/environment.txt"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
