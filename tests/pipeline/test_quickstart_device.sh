#!/usr/bin/env bash
# test_quickstart_device.sh — the quickstart's training stages (ssl_pretrain,
# vlm_pretrain, sft) and its evaluation with `device: cuda` on the CUDA
# emulator (kernels/emu), against the same run on the CPU; then once more at
# `precision: bf16`. The emulator's
# kernels are the CPU's, so every logged loss, gradient norm, validation
# metric and evaluation number must be equal as text; its device memory
# faults when host code touches it, so a component or stage that reads
# device memory on the host crashes this test.
# Usage: test_quickstart_device.sh PIPELINE_BINARY
set -u
bin="$1"
src="${PATHSEG_SOURCE_DIR:?}"
emu="${PATHSEG_CUDA_EMULATOR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
      --set stages.evaluate.max_new_tokens=8 --set stages.report.enabled=false
      --set threads=1)

run() { # DEVICE OUTDIR [more --set ...]
  local out dev="$1" dir="$2"
  shift 2
  out=$(env PATHSEG_CUDA_LIBRARY="$emu" "$bin" run "$src/pipelines/quickstart.yaml" --quiet \
    "${sets[@]}" --set device="$dev" --set run_dir="$dir" "$@" 2>&1)
  local status=$?
  if [[ $status -ne 0 ]]; then
    echo "device=$dev: status $status" >&2
    echo "$out" | tail -15 >&2
    return 1
  fi
}

failed=0
run cpu runs-cpu || failed=1
run cuda runs-cuda || failed=1
if [[ $failed -eq 0 ]]; then
  a=$(ls -d runs-cpu/*/ | head -1)
  b=$(ls -d runs-cuda/*/ | head -1)
  # every number except timings, throughput and memory, line by line
  strip() { sed -E 's/"(time|elapsed|seconds|[a-z_]*per_s|[a-z_]*_s|throughput[a-z_]*|rss[a-z_]*|peak[a-z_]*)": [-0-9.e+]+,? ?//g' "$1"; }
  if ! diff <(strip "$a/metrics.jsonl") <(strip "$b/metrics.jsonl") > diff.txt; then
    echo "metrics.jsonl differs between device cpu and cuda (emulator):" >&2
    head -20 diff.txt >&2
    failed=1
  fi
  # 3 steps of each training stage (ssl_pretrain logs "total", the fit stages "loss")
  n=$(grep -c '"step": [123], "time": [0-9.]*, "\(loss\|mae_loss\)"' "$a/metrics.jsonl")
  if [[ $n -ne 9 ]]; then echo "$n training-step lines in $a/metrics.jsonl, expected 9" >&2; failed=1; fi
  grep -q "device cuda: cuda-emulator kernels" "$b/log.txt" || { echo "the cuda run did not use the emulator" >&2; failed=1; }
  n=$(find "$a" -name '*.csv' | wc -l)
  if [[ $n -lt 1 ]]; then echo "no evaluation tables in $a" >&2; failed=1; fi
  for f in $(cd "$a" && find . -name '*.csv' | sort); do
    cmp -s "$a/$f" "$b/$f" || { echo "$f differs" >&2; failed=1; }
  done
fi
# precision: bf16 (bf16 products, f32 everything else): the same stages run,
# every training loss within 1% of f32's, and not all of them equal to it.
if [[ $failed -eq 0 ]]; then
  if run cuda runs-bf16 --set precision=bf16; then
    c=$(ls -d runs-bf16/*/ | head -1)
    grep -q "precision bf16" "$c/log.txt" || { echo "the bf16 run did not say bf16" >&2; failed=1; }
    losses() { grep -o '"\(loss\|mae_loss\)": [-0-9.e+]*' "$1/metrics.jsonl" | sed 's/.*: //'; }
    if ! paste <(losses "$a") <(losses "$c") | awk '
        { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 0.01 * ($1 < 0 ? -$1 : $1)) far++; if ($1 != $2) diff++ }
        END { if (n < 9 || far > 0 || diff == 0) { printf "bf16: %d losses, %d off by >1%%, %d differ\n", n, far, diff > "/dev/stderr"; exit 1 } }'; then
      failed=1
    fi
  else
    failed=1
  fi
fi
[[ $failed -eq 0 ]] && echo "quickstart on the emulated device matches the CPU (f32) and trains at bf16" 
exit $failed
