#!/usr/bin/env bash
# test.sh — configure, build and run the whole test suite.
#   tools/test.sh              the normal build in build/
#   tools/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
if [[ "${1:-}" == "--sanitize" ]]; then
  dir=build-asan
  flags=(-DPATHSEG_SANITIZE=ON -DPATHSEG_CUDA=OFF -DPATHSEG_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug)
  # intercept_tls_get_addr=0: LeakSanitizer's exit-time tracer otherwise crashes now and then
  # on a bogus thread-local range (google/sanitizers#1322), failing a passed test.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:intercept_tls_get_addr=0"
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
else
  dir=build
  flags=()
fi
cmake -S . -B "$dir" -G Ninja "${flags[@]}"
cmake --build "$dir" -j "$jobs"
ctest --test-dir "$dir" --output-on-failure -j "$jobs"
