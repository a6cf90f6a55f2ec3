#!/usr/bin/env bash
# gpu-check.sh — build pathseg with CUDA and check every CUDA kernel against
# the CPU kernel on random data, then run the GPU benchmarks (bench/gpu_check.c).
# Checked: every f32 entry (rel err <= 1e-5), every bf16 entry against the CPU
# f32 op on bf16-rounded data (<= 1e-2), conv2d through cuDNN (when CMake
# found it) and through the own kernels (PATHSEG_NO_CUDNN=1). The cuDNN
# algorithm choices are logged (PATHSEG_CUDNN_LOG=1). Then the NCCL backend of
# data-parallel runs on one GPU (comm/nccl/nccl_smoke.c: every collective on
# device and host memory, one rank), when CMake found NCCL and MPI. Then
# training on the GPU: tools/gpu-train-check.sh (the quickstart's stages on
# cpu, cuda and cuda + bf16, losses compared).
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
grep -E "pathseg: (✓|✗) (CUDA|cuBLAS|cuDNN)" "$log" || true
if ! grep -q "pathseg: ✓ CUDA" "$log"; then
  echo "gpu-check: CMake did not enable CUDA (see $log)" >&2
  exit 2
fi

echo "gpu-check: building pathseg-cuda and gpu_check"
cmake --build "$build" --target pathseg-cuda gpu_check -j "$jobs"
have_nccl=0
if grep -q "pathseg: ✓ NCCL" "$log" && grep -q "pathseg: ✓ MPI" "$log"; then
  cmake --build "$build" --target nccl_smoke pathseg-nccl -j "$jobs" && have_nccl=1
fi
echo "gpu-check: built in $(($(date +%s) - t0)) s"

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi

# libpathseg dlopens libpathseg-cuda.so by name: the build tree must be on the path.
export LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATHSEG_CUDNN_LOG=1
out="$build/gpu-check.log"
set +e
# The build took its share of the 8 minutes; the checks and benchmarks get
# the rest (they need well under a minute on an H100).
timeout 360 "$build/bench/gpu_check" ${GPU_CHECK_ARGS:-} 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
if [[ $rc -eq 0 && $have_nccl -eq 1 ]]; then
  # One rank on one GPU (MPI starts as a singleton; root needs the two
  # Open MPI allowances).
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 "$build/comm/nccl_smoke" 2>&1 |
    tee -a "$out"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "gpu-check: nccl_smoke FAIL" | tee -a "$out"; rc=1; }
elif [[ $have_nccl -eq 0 ]]; then
  echo "gpu-check: NCCL or MPI not found by CMake: the NCCL backend was not checked" | tee -a "$out"
fi
if [[ $rc -eq 0 ]]; then
  # Training on the GPU: the quickstart's stages on cpu, cuda f32 and cuda
  # bf16 (tools/gpu-train-check.sh); needs the whole build.
  echo "gpu-check: building the pipeline command and the plugins"
  cmake --build "$build" -j "$jobs" >"$build/gpu-check-build.log" 2>&1 ||
    { tail -20 "$build/gpu-check-build.log"; echo "gpu-check: build FAIL" | tee -a "$out"; rc=1; }
  if [[ $rc -eq 0 ]]; then
    timeout 240 "$src/tools/gpu-train-check.sh" "$build" 2>&1 | tee -a "$out"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
  fi
fi
if grep -q "FAIL" "$out"; then
  echo "gpu-check: failed outputs:"
  grep "FAIL" "$out" || true
fi
echo "gpu-check: finished in $(($(date +%s) - t0)) s with status $rc"
case $rc in
  0) echo "gpu-check: all CUDA ops match the CPU" ;;
  2) echo "gpu-check: no CUDA device on this machine (nothing was checked)" ;;
  124) echo "gpu-check: timed out" >&2; rc=1 ;;
  *) echo "gpu-check: FAILED" >&2 ;;
esac
exit $rc
