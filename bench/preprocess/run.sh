#!/usr/bin/env bash
# run.sh — the whole-slide preprocessing benchmark in one command: builds
# what it needs, runs bench_preprocess at PNG level 6 (Pillow's and zlib's
# default) and level 1, and writes the RESULT lines with the machine, load
# and date to bench/results/preprocess-<UTC date>.txt. Not run by ctest.
#
#   bench/preprocess/run.sh [BUILD_DIR] [extra bench_preprocess options]
#
# Defaults: 8 copies of tests/data/CMU-1-Small-Region.svs, 256 px tiles with
# overlap 128, workers 2, 3 repetitions (COPIES, REPS, WORKERS override).
# The peer needs python3-openslide python3-pil python3-numpy (Debian).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
build="${1:-$root/build}"
shift || true
copies="${COPIES:-8}" reps="${REPS:-3}" workers="${WORKERS:-2}"

if ! /usr/bin/python3 -c "import openslide, PIL, numpy" 2>/dev/null; then
  echo "run.sh: the peer needs python3-openslide python3-pil python3-numpy" >&2
  exit 1
fi
cmake --build "$build" --target bench_preprocess pipeline pathseg-preprocess >/dev/null

mkdir -p "$root/bench/results"
out="$root/bench/results/preprocess-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores online)"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"
for level in 6 1; do
  "$build/bench/preprocess/bench_preprocess" --copies "$copies" --reps "$reps" --workers "$workers" \
    --level "$level" "$@" | tee -a "$out"
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "results: $out"
