#!/usr/bin/env bash
# run.sh — the training-step benchmark: one sft step (forward + backward +
# AdamW) of the quickstart's tiny model in pathseg (bench_train_step) and in
# PyTorch (peer_train_step.py), in the same session, with the same thread
# count and BLAS settings on both sides. Writes
# bench/results/train_step-<UTC date>.txt with the machine, load, every
# paired step, the RESULT lines of both sides and a summary. First it checks
# that both sides compute the same function: the peer loads pathseg's initial
# parameters and batch image and both print the loss without dropout.
#
#   bench/train_step/run.sh [BUILD_DIR]
#
# Both processes run at once in lockstep: this script tells one to take a
# timed step, waits for it, then the other (the order alternates pair by
# pair), so that both see the same machine load; the speedup is the median
# over pairs of torch_ms / pathseg_ms. Each process reports its wall and CPU
# time per step (CPU time is a second, load-robust estimate at one thread)
# and its peak resident memory (ru_maxrss).
#
# BUILD_DIR defaults to ./build. Environment:
#   THREADS  thread counts to measure (default "1 2"; quickstart.yaml uses 1):
#            OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, the pipeline's threads and
#            torch.set_num_threads all get the same value
#   ROUNDS   lockstep sessions (fresh processes) per thread count (default 2)
#   STEPS    timed step pairs per session (default 20), WARMUP (default 3)
#   OPENBLAS_CORETYPE  passed to both sides; defaults to SapphireRapids on a CPU
#            with AVX-512 (Debian's OpenBLAS 0.3.21 picks Prescott kernels on
#            Sapphire/Emerald Rapids otherwise); torch links the same OpenBLAS.
#   OMP_WAIT_POLICY  passed through and recorded: at 2+ threads on a busy
#            machine `passive` changes the step time several-fold (both sides).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../../build}"
bin="$build/bench/train_step/bench_train_step"
threads_list="${THREADS:-1 2}"
rounds="${ROUNDS:-2}"
steps="${STEPS:-20}"
warmup="${WARMUP:-3}"
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SapphireRapids
fi
if [[ ! -x "$bin" ]]; then
  echo "run.sh: $bin not built (cmake --build $build --target bench_train_step)" >&2
  exit 1
fi
peer=/usr/bin/python3
if ! "$peer" -c "import torch" 2>/dev/null; then
  echo "run.sh: Debian python3-torch is not installed (tools/install-deps.sh --peers)" >&2
  exit 1
fi

results="$(cd "$here/.." && pwd)/results"
mkdir -p "$results"
out="$results/train_step-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# train_step benchmark: quickstart sft step (forward + backward + AdamW), tiny preset, batch 8, seq 256"
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores online)"
  echo "# threads measured: $threads_list (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, pipeline threads, torch.set_num_threads)"
  echo "# OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset} (both sides)"
  echo "# OMP_WAIT_POLICY: ${OMP_WAIT_POLICY:-unset (libgomp default: spin, then sleep)} (both sides)"
  echo "# torch: $("$peer" -c 'import torch; print(torch.__version__)')"
  echo "# lockstep sessions per thread count: $rounds, paired steps per session: $steps after $warmup warm-up steps"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"

# Same model, same function: pathseg's initial parameters and batch image go
# to the peer, and both print the loss of one forward without dropout.
check_same() {
  local dir c p
  dir=$(mktemp -d)
  c=$("$bin" --dump "$dir/init.safetensors" --steps 1 --warmup 0 | sed -n 's/^# eval-mode loss.*total.loss \([^,]*\).*/\1/p')
  p=$("$peer" "$here/peer_train_step.py" --load "$dir/init.safetensors" --steps 1 --warmup 0 |
    sed -n 's/^# eval-mode loss.*total \([^,]*\).*/\1/p')
  rm -rf "$dir"
  awk -v c="$c" -v p="$p" 'BEGIN {
    d = c - p; if (d < 0) d = -d
    ok = c != "" && p != "" && d <= 1e-4 * (c < 0 ? -c : c)
    printf "# SAME FUNCTION: eval-mode loss on the same parameters and batch: pathseg %s, torch %s: %s\n",
           c, p, ok ? "agree (rel. diff <= 1e-4)" : "DIFFER: the peer no longer matches pipelines/quickstart.yaml"
  }'
}

# One lockstep session: both sides started with --lockstep on FIFOs, then
# $steps pairs of steps; prints the children's own lines and one PAIR line
# per pair.
session() {
  local t=$1 dir pid_c pid_p line i first c_ms c_cpu p_ms p_cpu
  dir=$(mktemp -d)
  mkfifo "$dir/ci" "$dir/co" "$dir/pi" "$dir/po"
  "$bin" --lockstep --threads "$t" --steps "$steps" --warmup "$warmup" <"$dir/ci" >"$dir/co" &
  pid_c=$!
  "$peer" "$here/peer_train_step.py" --lockstep --threads "$t" --steps "$steps" --warmup "$warmup" \
    <"$dir/pi" >"$dir/po" &
  pid_p=$!
  exec 3>"$dir/ci" 4<"$dir/co" 5>"$dir/pi" 6<"$dir/po"
  # Copies a child's lines up to (not including) its READY or STEP line.
  until_tag() { # fd tag -> sets $line
    while IFS= read -r -u "$1" line; do
      [[ $line == "$2"* ]] && return 0
      echo "$line"
    done
    echo "run.sh: a benchmark process ended early" >&2
    return 1
  }
  until_tag 4 READY && until_tag 6 READY
  for ((i = 1; i <= steps; i++)); do
    for first in $( ((i % 2)) && echo "c p" || echo "p c"); do
      if [[ $first == c ]]; then
        echo go >&3; until_tag 4 STEP; read -r _ c_ms c_cpu <<<"$line"
      else
        echo go >&5; until_tag 6 STEP; read -r _ p_ms p_cpu <<<"$line"
      fi
    done
    echo "PAIR threads=$t pathseg_ms=$c_ms torch_ms=$p_ms pathseg_cpu_ms=$c_cpu torch_cpu_ms=$p_cpu"
  done
  exec 3>&- 5>&-
  cat <&4
  cat <&6
  exec 4<&- 6<&-
  wait "$pid_c" "$pid_p"
  rm -rf "$dir"
}

OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 check_same | tee -a "$out"
for t in $threads_list; do
  export OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t"
  for ((r = 1; r <= rounds; r++)); do
    echo "# threads $t, session $r/$rounds (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$out"
    session "$t" | tee -a "$out"
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"

# Summary per thread count: medians over all pairs (of each side's wall
# time, of the per-pair wall and CPU ratios) and the peak RSS of each side;
# the parameter counts of the two sides must agree for the comparison to
# mean anything.
awk '
  function val(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  /^PAIR / {
    t = val("threads"); th[t] = 1; n[t]++
    pm[t] = pm[t] " " val("pathseg_ms"); tm[t] = tm[t] " " val("torch_ms")
    r[t] = r[t] " " val("torch_ms") / val("pathseg_ms")
    rc[t] = rc[t] " " val("torch_cpu_ms") / val("pathseg_cpu_ms")
  }
  /^RESULT train_step / {
    side = $3; t = val("threads")
    rss[side SUBSEP t] = rss[side SUBSEP t] " " val("peak_rss_mb")
    tot[side] = val("params_total"); tr[side] = val("params_trainable")
  }
  END {
    ok = tot["pathseg"] == tot["torch"] && tr["pathseg"] == tr["torch"]
    printf "# SUMMARY parameters: pathseg %s total / %s trainable, torch %s / %s: %s\n",
           tot["pathseg"], tr["pathseg"], tot["torch"], tr["torch"], ok ? "agree" : "DIFFER"
    for (t in th)
      printf "# SUMMARY threads=%s pairs=%d median ms/step pathseg=%.1f torch=%.1f | speedup (median of per-pair torch/pathseg) wall=%.2f cpu=%.2f | peak RSS MB pathseg=%.1f torch=%.1f\n",
             t, n[t], median(pm[t]), median(tm[t]), median(r[t]), median(rc[t]),
             median(rss["pathseg" SUBSEP t]), median(rss["torch" SUBSEP t])
  }' "$out" | tee -a "$out"
echo "run.sh: results in $out"
