#!/usr/bin/env bash
# gpu-check.sh — build pathseg with CUDA and check every CUDA kernel against
# the CPU kernel on random data, then run the GPU benchmarks (bench/gpu_check.c).
# Meant for a machine with an NVIDIA GPU (fits in 8 minutes on one H100); on
# a machine without one it builds, says "no CUDA device" and exits 2.
#
#   tools/gpu-check.sh [BUILD_DIR]      (default: build-gpu)
#   GPU_CHECK_ARGS=--no-bench tools/gpu-check.sh    accuracy checks only
#
# Exit status: 0 all checks passed, 1 a check failed (or the build did),
# 2 no CUDA toolkit or no CUDA device.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$src/build-gpu}"
jobs="${JOBS:-$(nproc)}"
t0=$(date +%s)

if ! command -v nvcc >/dev/null 2>&1 && [[ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
  echo "gpu-check: no CUDA toolkit (nvcc not found; set CUDA_HOME)" >&2
  exit 2
fi

echo "gpu-check: configuring $build"
mkdir -p "$build"
log="$build/gpu-check-configure.log"
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPATHSEG_CUDA=ON \
  -DPATHSEG_BENCH=ON >"$log" 2>&1 || {
  tail -30 "$log" >&2
  exit 1
}
grep -E "pathseg: (✓|✗) (CUDA|cuBLAS)" "$log" || true
if ! grep -q "pathseg: ✓ CUDA" "$log"; then
  echo "gpu-check: CMake did not enable CUDA (see $log)" >&2
  exit 2
fi

echo "gpu-check: building pathseg-cuda and gpu_check"
cmake --build "$build" --target pathseg-cuda gpu_check -j "$jobs"

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi

# libpathseg dlopens libpathseg-cuda.so by name: the build tree must be on the path.
export LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
set +e
timeout 420 "$build/bench/gpu_check" ${GPU_CHECK_ARGS:-}
rc=$?
set -e
echo "gpu-check: finished in $(($(date +%s) - t0)) s with status $rc"
case $rc in
  0) echo "gpu-check: all CUDA ops match the CPU" ;;
  2) echo "gpu-check: no CUDA device on this machine (nothing was checked)" ;;
  124) echo "gpu-check: timed out" >&2; rc=1 ;;
  *) echo "gpu-check: FAILED" >&2 ;;
esac
exit $rc
