#!/usr/bin/env bash
# run.sh — data-parallel scaling of training on this machine: the tiny model
# (tests/comm/dp_tiny.yaml) and a mid-size one (the same graph, 4x wider
# MedSAM encoder and LLM) trained with stage.fit for STEPS steps at a fixed
# global batch of 8, as
#   1 rank  x 1 thread   (batch 8)
#   1 rank  x 2 threads  (batch 8)
#   2 ranks x 1 thread   (batch 4 each; mpirun -np 2)
# Steps/s come from metrics.jsonl timestamps (steps 5..STEPS, after warm-up);
# the communication volume per step is the `comm_bytes` metric (bytes one
# rank sends per step: the gradient buckets plus the loss and stop flags).
#
#   bench/scaling/run.sh [BUILD_DIR] [STEPS]
# Results go to bench/results/scaling-<UTC date>.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
build="$(cd "${1:-$root/build}" && pwd)"
steps="${2:-25}"
pipeline="$build/tools/pipeline"
yaml="$root/tests/comm/dp_tiny.yaml"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$here/../results"
out="$here/../results/scaling-$(date -u +%Y%m%dT%H%M%SZ).txt"

mid=(--set components.medsam.with.embed_dim=256 --set components.medsam.with.depth=4
     --set components.medsam.with.num_heads=8
     --set components.llm.with.hidden=512 --set components.llm.with.layers=4
     --set components.llm.with.heads=8 --set components.llm.with.kv_heads=2
     --set components.llm.with.intermediate=1408 --set components.projector.with.llm_width=512
     --set components.seg_adapter.with.hidden=512)

# steps/s and comm bytes/step of the newest run under $1 (metrics.jsonl
# times are Unix seconds with millisecond precision)
measure() {
  local m; m="$(ls -d "$1"/*/ | tail -1)metrics.jsonl"
  awk -v steps="$steps" '
    /"loss":/ { match($0, /"step": [0-9]+/); s = substr($0, RSTART + 8, RLENGTH - 8) + 0;
                match($0, /"time": [0-9.]+/); t[s] = substr($0, RSTART + 8, RLENGTH - 8) + 0 }
    /"comm_bytes":/ { match($0, /"comm_bytes": [0-9.e+]+/); c = substr($0, RSTART + 14, RLENGTH - 14) + 0 }
    END { printf "%.3f %.0f\n", (steps - 5) / (t[steps] - t[5]), c }' "$m"
}

{
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores online)"
  echo "# OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset}; mpirun: $(mpirun --version | head -1)"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# steps: $steps (timed 5..$steps), global batch 8"
} | tee "$out"
cd "$work"
# the benchmark data once
"$pipeline" run "$yaml" --quiet --set run_dir="$work/prep" --set stages.sft.enabled=false > /dev/null
for size in tiny mid; do
  extra=()
  [[ $size == mid ]] && extra=("${mid[@]}")
  common=(run "$yaml" --quiet --set stages.sft.steps="$steps" --set stages.sft.eval_batches=0 "${extra[@]}")
  OMP_NUM_THREADS=1 "$pipeline" "${common[@]}" --set run_dir="$work/$size-1x1" --set threads=1 > /dev/null
  read -r s11 _ < <(measure "$work/$size-1x1")
  OMP_NUM_THREADS=2 "$pipeline" "${common[@]}" --set run_dir="$work/$size-1x2" --set threads=2 > /dev/null
  read -r s12 _ < <(measure "$work/$size-1x2")
  OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe -x OMP_NUM_THREADS "$pipeline" "${common[@]}" \
    --set run_dir="$work/$size-2x1" --set threads=1 --set stages.sft.batch_size=4 > /dev/null
  read -r s21 bytes < <(measure "$work/$size-2x1")
  params=$(grep -o 'training [0-9]* parameters' "$(ls -d "$work/$size-1x1"/*/ | tail -1)log.txt" | grep -o '[0-9]*')
  awk -v n="$size" -v p="$params" -v a="$s11" -v b="$s12" -v c="$s21" -v bytes="$bytes" 'BEGIN {
    printf "RESULT scaling %s trainable=%d steps_per_s_1x1=%.3f steps_per_s_1x2=%.3f steps_per_s_2x1=%.3f speedup_2x1_vs_1x1=%.2f efficiency=%.2f speedup_2x1_vs_1x2=%.2f comm_mb_per_step=%.2f\n",
      n, p, a, b, c, c / a, c / a / 2, c / b, bytes / 1e6 }' | tee -a "$out"
done
