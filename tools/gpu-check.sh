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
# cpu, cuda and cuda + bf16, losses compared). The benchmarks' peer is
# bench/gpu_peer_torch.py (PyTorch on the same GPU), where python3 has it.
# A build packed elsewhere (tools/gpu-pack.sh; a folder with hostlibs/) is
# used as it is: tools/gpu-run-packed.sh unpacks one and calls this script.
# Meant for a machine with an NVIDIA GPU (fits in 8 minutes on one H100); on
# a machine without one it builds, says "no CUDA device" and exits 2.
#
#   tools/gpu-check.sh [BUILD_DIR]      (default: build-gpu)
#   GPU_CHECK_ARGS=--no-bench tools/gpu-check.sh    accuracy checks only
#   GPU_CHECK_PARTS="train" tools/gpu-check.sh      some of: ops nccl train
#
# Exit status: 0 all checks passed, 1 a check failed (or the build did),
# 2 no CUDA toolkit or no CUDA device.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$src/build-gpu}"
jobs="${JOBS:-$(nproc)}"
t0=$(date +%s)

have_nccl=0
if [[ -d "$build/hostlibs" ]]; then
  # A build made elsewhere and carried here (tools/gpu-pack.sh): its host
  # libraries travel in hostlibs; cuBLAS, cuDNN and NCCL are this machine's.
  echo "gpu-check: using the prebuilt $build"
  export LD_LIBRARY_PATH="$build/hostlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  for lib in libcublas.so.13 libcudnn.so.9 libnccl.so.2; do
    ldconfig -p 2>/dev/null | grep -q "$lib" && continue
    dir=$(find /usr/local/cuda/ /usr/local/cuda*/lib64/ /usr/lib/x86_64-linux-gnu/ /opt/ -name "$lib" \
      -printf '%h\n' 2>/dev/null | head -1)
    if [[ -n "$dir" ]]; then
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$dir"
      echo "gpu-check: $lib from $dir"
    fi
  done
  if [[ -d "$build/hostlibs/openmpi" ]]; then
    export OMPI_MCA_mca_base_component_path="$build/hostlibs/openmpi" OMPI_MCA_ess_singleton_isolated=1
  fi
  [[ -x "$build/comm/nccl_smoke" ]] && have_nccl=1
else
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
  echo "gpu-check: building"
  # The whole build: the training check needs the pipeline command and the plugins.
  cmake --build "$build" -j "$jobs" >"$build/gpu-check-build.log" 2>&1 ||
    { tail -30 "$build/gpu-check-build.log"; echo "gpu-check: build FAIL"; exit 1; }
  if grep -q "pathseg: ✓ NCCL" "$log" && grep -q "pathseg: ✓ MPI" "$log"; then have_nccl=1; fi
  echo "gpu-check: built in $(($(date +%s) - t0)) s"
fi

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
parts=" ${GPU_CHECK_PARTS:-ops nccl train} "
: >"$out"
rc=0
# Each part runs whatever the parts before it found, so that one run on a
# lent GPU reports everything.
if [[ $parts == *" ops "* ]]; then
  timeout "${GPU_OPS_TIMEOUT:-360}" "$build/bench/gpu_check" ${GPU_CHECK_ARGS:-} 2>&1 | tee -a "$out"
  rc=${PIPESTATUS[0]}
  if [[ $rc -eq 2 ]]; then
    echo "gpu-check: no CUDA device on this machine (nothing was checked)"
    exit 2
  fi
  if [[ $rc -ne 0 ]] && command -v compute-sanitizer >/dev/null 2>&1; then
    # A CUDA error stops gpu_check at the first bad kernel; memcheck names it.
    echo "gpu-check: gpu_check failed ($rc); again under compute-sanitizer, accuracy checks only" | tee -a "$out"
    timeout 150 compute-sanitizer --print-limit 10 "$build/bench/gpu_check" --no-bench 2>&1 | tail -60 | tee -a "$out"
  fi
  if [[ " ${GPU_CHECK_ARGS:-} " != *" --no-bench "* ]]; then
    # The peer of the benchmarks: the same cases through PyTorch on this GPU.
    if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      timeout 120 python3 "$src/bench/gpu_peer_torch.py" 2>&1 | tee -a "$out"
    else
      echo "gpu-check: no python3 with CUDA PyTorch here: no peer for the benchmarks" | tee -a "$out"
    fi
  fi
fi
if [[ $parts == *" nccl "* ]]; then
  if [[ $have_nccl -eq 1 ]]; then
    # One rank on one GPU (MPI starts as a singleton; root needs the two
    # Open MPI allowances).
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 "$build/comm/nccl_smoke" 2>&1 |
      tee -a "$out"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "gpu-check: nccl_smoke FAIL" | tee -a "$out"; rc=1; }
  else
    echo "gpu-check: NCCL or MPI not found by CMake: the NCCL backend was not checked" | tee -a "$out"
  fi
fi
if [[ $parts == *" train "* ]]; then
  # Training on the GPU: the quickstart's stages on cpu, cuda f32 and cuda bf16.
  timeout "${GPU_TRAIN_TIMEOUT:-240}" "$src/tools/gpu-train-check.sh" "$build" 2>&1 | tee -a "$out"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "gpu-check: training check FAIL" | tee -a "$out"; rc=1; }
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
