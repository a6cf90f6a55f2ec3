#!/usr/bin/env bash
# run.sh — the component benchmarks against their PyTorch peers, in one run:
#   - llm.qwen2 greedy generation at Qwen2.5-0.5B shapes (PROMPT=32 ids, then
#     NEW=64 tokens, KV cache on both sides) — tokens/s, and whether both
#     sides generated the same tokens; two PyTorch peers: `torch` projects
#     with F.linear as transformers does, `torch_mv` runs decode steps as
#     torch.mv (see peer_components.py);
#   - encoder.medsam at SAM ViT-B/1024, one image — images/s, and the largest
#     difference between the two sides' embeddings;
#   - peak resident memory of loading a ViT-B checkpoint (bench_load_rss).
# Both sides load the same random weights from one safetensors file per model
# (made by bench_components on first use, kept in WORK), use THREADS threads
# (OpenMP, OpenBLAS, torch.set_num_threads) and take the median of REPS runs
# after a warm-up; ROUNDS alternates pathseg and PyTorch processes so that
# background load hits both. Results (machine, threads, load, OPENBLAS_CORETYPE,
# RESULT lines) go to bench/results/components-<UTC date>.txt.
#
#   bench/components/run.sh [BUILD_DIR]
#
# Environment: THREADS (default: all cores), REPS (3), ROUNDS (2), PROMPT (32),
# NEW (64), WORK (a directory for the weight files, default /tmp/pathseg-bench-components),
# ONLY (qwen2, medsam or rss: run just that part).
# Set OPENBLAS_CORETYPE=SapphireRapids on recent Xeons (Debian's OpenBLAS
# 0.3.21 falls back to Prescott kernels otherwise); it applies to both sides.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../../build}"
threads="${THREADS:-$(nproc)}"
reps="${REPS:-3}"
rounds="${ROUNDS:-2}"
prompt="${PROMPT:-32}"
new="${NEW:-64}"
work="${WORK:-/tmp/pathseg-bench-components}"
only="${ONLY:-}"
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"

bin="$build/bench/components"
for b in bench_components bench_load_rss; do
  if [[ ! -x "$bin/$b" ]]; then
    echo "run.sh: $bin/$b not built (cmake --build $build --target $b)" >&2
    exit 1
  fi
done
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "run.sh: the PyTorch peer needs Debian's python3-torch (tools/install-deps.sh --peers)" >&2
  exit 1
fi
peer=(/usr/bin/python3 "$here/peer_components.py")

mkdir -p "$work" "$here/../results"
out="$here/../results/components-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores online)"
  echo "# threads: $threads (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, torch.set_num_threads)"
  echo "# OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset}"
  echo "# reps $reps, rounds $rounds, qwen2 prompt $prompt new $new"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"

qw="$work/qwen2-0.5b-random.safetensors"
ms="$work/medsam-vitb-random.safetensors"
for r in $(seq 1 "$rounds"); do
  echo "# round $r, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  if [[ -z "$only" || "$only" == qwen2 ]]; then
    "$bin/bench_components" qwen2 "$qw" "$threads" "$prompt" "$new" "$reps" "$work/qwen2.tokens" | tee -a "$out"
    "${peer[@]}" qwen2 "$qw" "$threads" "$prompt" "$new" "$reps" "$work/qwen2.tokens" | tee -a "$out"
    "${peer[@]}" qwen2-mv "$qw" "$threads" "$prompt" "$new" "$reps" "$work/qwen2.tokens" | tee -a "$out"
  fi
  if [[ -z "$only" || "$only" == medsam ]]; then
    "$bin/bench_components" medsam "$ms" "$threads" "$reps" "$work/medsam.out" | tee -a "$out"
    "${peer[@]}" medsam "$ms" "$threads" "$reps" "$work/medsam.out" | tee -a "$out"
  fi
done
if [[ -z "$only" || "$only" == rss ]]; then
  "$bin/bench_load_rss" --depth 12 | tee -a "$out"
fi
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"

# Ratios of the medians over rounds (pathseg / PyTorch throughput).
awk '
  /^RESULT components/ {
    side = ""; v = ""
    for (i = 1; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "side") side = kv[2]
      if (kv[1] == "tokens_per_s" || kv[1] == "images_per_s") v = kv[2]
    }
    key = $3 "/" side; n[key]++; val[key, n[key]] = v
  }
  function med(key,   i, j, t, m) {
    m = n[key]
    for (i = 1; i <= m; i++) a[i] = val[key, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    split("qwen2_generate/torch qwen2_generate/torch_mv medsam_encoder/torch", cases, " ")
    for (k = 1; k <= 3; k++) {
      split(cases[k], c, "/")
      if (!n[c[1] "/pathseg"] || !n[cases[k]]) continue
      p = med(c[1] "/pathseg"); t = med(cases[k])
      printf "SUMMARY %s pathseg=%.3f %s=%.3f ratio=%.2f\n", c[1], p, c[2], t, p / t
    }
  }' "$out" | tee -a "$out"
echo "results: $out"
