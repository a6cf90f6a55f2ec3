#!/usr/bin/env bash
# test_cli.sh — the `pipeline` command end to end: listing, describing,
# validating, dry runs, a real run, and the error paths (clear message,
# non-zero exit, never a crash). Usage: test_cli.sh PIPELINE_BINARY ABI_DIR
set -u
bin="$1"
abi_dir="$2"
src="${PATHSEG_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect STATUS NEEDLE -- command...: exit status and a substring of stdout+stderr.
expect() {
  local want_status="$1" needle="$2"
  shift 3
  local out status
  out=$("$@" 2>&1)
  status=$?
  if [[ "$status" -ge 128 ]]; then
    bad "crashed (status $status): $*"; echo "$out" | tail -5 >&2; return
  fi
  if [[ "$status" != "$want_status" ]]; then
    bad "status $status, expected $want_status: $*"; echo "$out" | tail -5 >&2; return
  fi
  if [[ -n "$needle" && "$out" != *"$needle"* ]]; then
    bad "output lacks '$needle': $*"; echo "$out" | tail -5 >&2; return
  fi
  ok
}

expect 0 "example.linear" -- "$bin" plugins
expect 0 "stage.fit" -- "$bin" plugins
expect 0 "in_features" -- "$bin" describe example.linear
expect 0 "[N, in_features] f32" -- "$bin" describe example.linear
expect 1 "did you mean 'example.linear'" -- "$bin" describe example.linaer
expect 0 "valid (3 components, 1 stages)" -- "$bin" validate "$src/pipelines/example.yaml"
expect 0 "valid" -- "$bin" validate "$src/pipelines/example.yaml" --set stages.fit.steps=5
expect 1 "steps" -- "$bin" validate "$src/pipelines/example.yaml" --set stages.fit.steps=minus-one
expect 1 "no-such.yaml" -- "$bin" validate "$tmp/no-such.yaml"
expect 2 "usage" -- "$bin" frobnicate
expect 2 "usage" -- "$bin"
# A bare name resolves against the installed (here: source) pipelines/.
(cd "$tmp" && expect 0 "valid" -- "$bin" validate example.yaml)

# The dry run prints components, bindings, order, stages and what trains.
expect 0 "order: toy -> linear -> mse" -- "$bin" run "$src/pipelines/example.yaml" --dry-run
expect 0 "x <- data.x" -- "$bin" run "$src/pipelines/example.yaml" --dry-run
expect 0 "trains 36 parameters" -- "$bin" run "$src/pipelines/example.yaml" --dry-run
[[ ! -d runs ]] && ok || bad "--dry-run created a run directory"

# A real (short) run.
expect 0 "run finished" -- "$bin" run "$src/pipelines/example.yaml" --quiet \
  --set "run_dir=$tmp/runs" --set stages.fit.steps=20
run_dir=$(ls -d "$tmp"/runs/example-* 2>/dev/null | head -1)
[[ -f "$run_dir/metrics.jsonl" && -f "$run_dir/checkpoints/last.safetensors" && -f "$run_dir/pipeline.yaml" ]] \
  && ok || bad "run directory incomplete: $run_dir"
ls "$run_dir/checkpoints" | grep -q tmp && bad "temporary checkpoint left behind" || ok
# Non-terminal progress: plain lines on stderr.
out=$("$bin" run "$src/pipelines/example.yaml" --set "run_dir=$tmp/runs" --set stages.fit.steps=20 2>&1)
[[ "$out" == *"[fit] step 20/20"* && "$out" != *$'\r'* ]] && ok || bad "progress lines: $out"

# The test plugins: refusals are reported with the file and reason.
expect 0 "major versions differ" -- "$bin" --plugin-path "$abi_dir" plugins
expect 0 "failed to initialise" -- "$bin" --plugin-path "$abi_dir" plugins

# Fixtures: an unknown component is a one-line error, a non-fixture file too.
json='{"__metadata__":{"component":"sam.nothing"},"output.x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
n=${#json}
{ printf "\\x$(printf %02x $((n & 255)))\\x$(printf %02x $((n >> 8)))\\x00\\x00\\x00\\x00\\x00\\x00"
  printf '%s' "$json"; printf '\x00'; } > "$tmp/unknown.safetensors"
expect 1 "no component 'sam.nothing' is registered" -- "$bin" fixture "$tmp/unknown.safetensors"
printf 'not a safetensors file' > "$tmp/junk.safetensors"
expect 1 "junk.safetensors" -- "$bin" fixture "$tmp/junk.safetensors"

# The benchmark manifest tools: check and review.
"$bin" run "$src/pipelines/build_benchmark.yaml" --quiet --set "run_dir=$tmp/runs" \
  --set "stages.build.out_dir=$tmp/bench" --set stages.build.tiles=6 --set stages.build.zeroshot_tiles=0 \
  --set stages.build.tile_size=64 > /dev/null 2>&1 && ok || bad "build_benchmark failed"
m="$tmp/bench/manifest.jsonl"
rm "$tmp/bench/masks/000002.png"
printf 'garbage' > "$tmp/bench/images/000004.png"
expect 1 "masks/000002.png" -- "$bin" dataset check "$m"
expect 1 "000004.png" -- "$bin" dataset check "$m"
expect 0 "0: images/000000.png" -- "$bin" dataset review "$m"
expect 0 "row 0 approved by alice" -- "$bin" dataset review "$m" --approve 0 --reviewer alice
expect 0 "row 3 revised by bob" -- "$bin" dataset review "$m" --revise 3 "They are in the centre. <SEG>" --reviewer bob
expect 1 "must contain <SEG>" -- "$bin" dataset review "$m" --revise 3 "no token" --reviewer bob
expect 1 "there is no row 99" -- "$bin" dataset review "$m" --approve 99 --reviewer bob
grep -q '"review":"approved","reviewer":"alice"' "$m" && grep -q '"reasoning":"They are in the centre. <SEG>"' "$m" \
  && ok || bad "reviews not recorded in the manifest"
"$bin" dataset review "$m" | grep -q "^0: " && bad "an approved row is still pending" || ok

# device: cuda on the real CUDA library: a machine without a GPU (or without
# the library) gets a clear error that says CUDA; one with a GPU trains.
out=$(env -u PATHSEG_CUDA_LIBRARY "$bin" run "$src/pipelines/example.yaml" --quiet \
  --set run_dir="$tmp/runs" --set device=cuda --set stages.fit.steps=3 2>&1)
status=$?
if [[ $status -ge 128 ]]; then bad "device=cuda crashed: $out"
elif [[ $status -ne 0 && "$out" != *CUDA* ]]; then bad "device=cuda error does not say CUDA: $out"
else ok; fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
