#!/usr/bin/env bash
# gpu-train-check.sh — the training path on a real GPU: the quickstart's
# ssl_pretrain, vlm_pretrain and sft stages (3 steps each, a tiny benchmark)
# and its zero-shot evaluation, run three times — device cpu, device cuda
# (f32) and device cuda with precision bf16 — and compared: every training
# loss of the f32 GPU run within 1e-3 (relative) of the CPU's (the kernels
# agree to ~1e-6 per op; three steps of Adam amplify that), of the bf16 run
# within 3%. Prints one table (stage, step, the three losses, the wall time
# of each run). The same comparison is bitwise on the CUDA emulator in ctest
# (test_quickstart_device); this is what only a GPU can show. With
# PATHSEG_CUDA_LIBRARY=BUILD_DIR/libpathseg-cudaemu.so it runs on a CPU-only
# machine against the emulator (how the script itself is tested).
#
#   tools/gpu-train-check.sh BUILD_DIR     (a build with CUDA; tools/gpu-check.sh calls it)
#   GPU_TRAIN_SETS='--set a=b ...'          more overrides for all three runs
#   GPU_TRAIN_RUNNER='compute-sanitizer'    a command the two CUDA runs go through
#   GPU_TRAIN_KEEP=DIR                      keep the CUDA runs' full output there
#
# Exit status: 0 agree, 1 a run failed or disagreed, 2 no CUDA device.
set -uo pipefail
build="$(cd "${1:?usage: gpu-train-check.sh BUILD_DIR}" && pwd)"
src="$(cd "$(dirname "$0")/.." && pwd)"
bin="$build/tools/pipeline"
tmp=$(mktemp -d)
keep() {
  [[ -n "${GPU_TRAIN_KEEP:-}" ]] && mkdir -p "$GPU_TRAIN_KEEP" && cp "$tmp"/cuda.out "$tmp"/bf16.out "$GPU_TRAIN_KEEP"/ 2>/dev/null
  rm -rf "$tmp"
}
trap keep EXIT
cd "$tmp" || exit 1

sets=(--set stages.build.tiles=24 --set stages.build.zeroshot_tiles=4 --set stages.build.patients=12
      --set stages.build.out_dir=data/q
      --set components.bench.with.manifest=data/q/manifest.jsonl
      --set components.captions.with.manifest=data/q/manifest.jsonl
      --set stages.ssl_pretrain.steps=3 --set stages.ssl_pretrain.batch_size=2
      --set stages.vlm_pretrain.steps=3 --set stages.vlm_pretrain.batch_size=2
      --set stages.vlm_pretrain.eval_every=0 --set stages.vlm_pretrain.eval_batches=1
      --set stages.sft.steps=3 --set stages.sft.batch_size=2 --set stages.sft.eval_every=0
      --set stages.sft.eval_batches=2 --set stages.sft.checkpoint_every=0
      --set stages.so_grpo.enabled=false --set stages.evaluate.splits=[zeroshot]
      --set stages.evaluate.max_new_tokens=8 --set stages.report.enabled=false --set threads=1
      ${GPU_TRAIN_SETS:-})

declare -A secs
run() { # NAME [more --set ...]
  local name="$1" t0 status runner=()
  shift
  [[ $name != cpu ]] && read -r -a runner <<<"${GPU_TRAIN_RUNNER:-}"
  t0=$EPOCHREALTIME
  "${runner[@]}" "$bin" run "$src/pipelines/quickstart.yaml" --quiet "${sets[@]}" --set run_dir="runs-$name" "$@" \
    >"$name.out" 2>&1
  status=$?
  secs[$name]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
  if [[ $status -ne 0 ]]; then
    echo "gpu-train-check: the $name run failed (status $status):" >&2
    tail -25 "$name.out" >&2
    return 1
  fi
}

failed=0
run cpu --set device=cpu || failed=1
run cuda --set device=cuda || {
  grep -q "no usable ps_cuda_kernels\|no CUDA device" cuda.out && { echo "gpu-train-check: no CUDA device"; exit 2; }
  failed=1
}
run bf16 --set device=cuda --set precision=bf16 || failed=1
[[ $failed -eq 0 ]] || exit 1

losses() { # RUN -> "stage step loss" lines (ssl_pretrain logs mae_loss, the fit stages loss)
  grep -h '"step"' runs-"$1"/*/metrics.jsonl |
    sed -n 's/.*"stage": "\([a-z_]*\)", "step": \([0-9]*\),.*"\(loss\|mae_loss\)": \([-0-9.e+]*\).*/\1 \2 \4/p'
}
printf '%-14s %4s %14s %14s %14s\n' stage step cpu cuda-f32 cuda-bf16
paste -d' ' <(losses cpu) <(losses cuda | cut -d' ' -f3) <(losses bf16 | cut -d' ' -f3) |
  awk -v out="$tmp/verdict" '
    function rel(a, b) { d = a - b; if (d < 0) d = -d; s = a < 0 ? -a : a; return d / (s > 1e-12 ? s : 1e-12) }
    { printf "%-14s %4s %14s %14s %14s\n", $1, $2, $3, $4, $5; n++
      if (rel($3, $4) > 1e-3) bad_f32++
      if (rel($3, $5) > 3e-2) bad_bf16++ }
    END { printf "%d %d %d\n", n, bad_f32, bad_bf16 > out }'
read -r n bad_f32 bad_bf16 <"$tmp/verdict"
printf 'wall time of the whole run: cpu %.1f s, cuda f32 %.1f s, cuda bf16 %.1f s\n' \
  "${secs[cpu]}" "${secs[cuda]}" "${secs[bf16]}"
grep -h "device cuda" runs-cuda/*/log.txt runs-bf16/*/log.txt | sed 's/^/  /'
for f in $(cd runs-cpu/*/ && ls *.csv 2>/dev/null); do
  echo "  $f: cpu | cuda"
  paste -d'|' runs-cpu/*/"$f" runs-cuda/*/"$f" | head -4 | sed 's/^/    /'
done
if [[ $n -ne 9 || $bad_f32 -ne 0 || $bad_bf16 -ne 0 ]]; then
  echo "gpu-train-check: FAIL ($n losses; $bad_f32 f32 beyond 1e-3, $bad_bf16 bf16 beyond 3%)"
  exit 1
fi
echo "gpu-train-check: ok (9 losses; f32 GPU within 1e-3 of the CPU, bf16 within 3%)"
