#!/bin/sh
# run.sh — the tokenizer benchmark: builds the corpora, checks that the C
# tokenizer and Hugging Face tokenizers (npm tokenizers@0.23.2) give the same
# ids on every line, and prints the encode throughput of both, in one run.
#
#   bench/tokenizer/run.sh BUILD_DIR [WORK_DIR]
# BUILD_DIR holds bench/tokenizer/bench_tokenizer; WORK_DIR (default
# /tmp/pathseg-bench-tokenizer) receives the corpora and the npm install
# (set TOKENIZERS_MODULE to use an install elsewhere).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:?usage: run.sh BUILD_DIR [WORK_DIR]}
work=${2:-/tmp/pathseg-bench-tokenizer}
mkdir -p "$work"
if [ -z "${TOKENIZERS_MODULE:-}" ]; then
  if [ ! -d "$work/node_modules/tokenizers" ]; then
    cp "$here/package.json" "$work/" && (cd "$work" && npm install --no-audit --no-fund >/dev/null)
  fi
  TOKENIZERS_MODULE="$work/node_modules/tokenizers"
fi
export TOKENIZERS_MODULE
node "$here/make_corpus.mjs" "$root/tests/fixtures/tokenizer_qwen.safetensors" "$work"
qwen="$root/tests/data/qwen2-tokenizer.json"
bin="$build/bench/tokenizer"
"$bin/train_tokenizer" --corpus "$work/synthetic.jsonl" --vocab-size 4096 \
  --added "<|endoftext|>" --added "<SEG>" --out "$work/trained.json"
for tok in qwen trained; do
  json=$qwen
  [ "$tok" = trained ] && json="$work/trained.json"
  for c in fixture synthetic fuzz; do
    "$bin/bench_tokenizer" --tokenizer "$json" --corpus "$work/$c.jsonl" --ids-out "$work/$tok-$c.ids"
    node "$here/bench_hf.mjs" --tokenizer "$json" --corpus "$work/$c.jsonl" --check "$work/$tok-$c.ids"
  done
done
