#!/usr/bin/env bash
# run.sh — run every CPU benchmark and its peer in the same session and write
# the results (machine, threads, date, load, RESULT lines) to
# bench/results/<UTC date>.txt. Not run by ctest (no timings in tests).
#
#   bench/run.sh [BUILD_DIR] [MIN_SECONDS]
#
# BUILD_DIR defaults to ./build (configured with PATHSEG_BENCH=ON, the
# default). THREADS (default: all cores) sets OpenMP, OpenBLAS and PyTorch
# threads alike. ROUNDS (default 3) alternates pathseg and PyTorch attention
# runs so that background load hits both; BENCHMARKS.md quotes the medians.
# The PyTorch peer needs Debian's python3-torch (tools/install-deps.sh --peers);
# without it the attention comparison is skipped with a note.
#
# OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons (Sapphire /
# Emerald Rapids report "Prescott" and run SSE3 kernels, ~7x slower):
# set OPENBLAS_CORETYPE=SapphireRapids (or SkylakeX) in the environment when
# bench_linear prints "core Prescott" on an AVX-512 machine.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
min_s="${2:-2}"
threads="${THREADS:-$(nproc)}"
rounds="${ROUNDS:-3}"
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"

for b in bench_linear bench_attention bench_memory; do
  if [[ ! -x "$build/bench/$b" ]]; then
    echo "run.sh: $build/bench/$b not built (cmake --build $build --target $b)" >&2
    exit 1
  fi
done

mkdir -p "$here/results"
out="$here/results/$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores online)"
  echo "# threads: $threads (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, torch.set_num_threads)"
  echo "# OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset}"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"

"$build/bench/bench_linear" "$min_s" | tee -a "$out"
"$build/bench/bench_memory" "$min_s" | tee -a "$out"

peer=""
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  peer=/usr/bin/python3
else
  echo "# peer: python3-torch is not installed: attention comparison skipped" | tee -a "$out"
fi
for ((r = 1; r <= rounds; r++)); do
  echo "# attention round $r/$rounds" | tee -a "$out"
  "$build/bench/bench_attention" "$min_s" | tee -a "$out"
  if [[ -n "$peer" ]]; then
    "$peer" "$here/peer_torch.py" "$threads" "$min_s" | tee -a "$out"
  fi
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "run.sh: results in $out"
