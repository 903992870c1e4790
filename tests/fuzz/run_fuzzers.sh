#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a fixed time from its seed corpus
# (tests/fuzz/corpus/<target>). Fails on any crash, sanitizer report, leak or timeout.
# Usage: run_fuzzers.sh BUILD_DIR SECONDS_PER_TARGET
set -euo pipefail
BUILD="$1"
SECS="${2:-15}"
HERE="$(cd "$(dirname "$0")" && pwd)"
cmake -S "$HERE" -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" >/dev/null
status=0
for t in tokenizer_file shard tokenize checkpoint_marker safetensors config; do
  work="$BUILD/corpus_$t"
  rm -rf "$work" && mkdir -p "$work"
  if "$BUILD/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$BUILD/crash_${t}_" "$work" "$HERE/corpus/$t" >"$BUILD/fuzz_$t.log" 2>&1; then
    echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$BUILD/fuzz_$t.log" | awk '{print $2}') runs, no crash"
  else
    echo "fuzz_$t: FAILED (see $BUILD/fuzz_$t.log)"
    tail -40 "$BUILD/fuzz_$t.log"
    status=1
  fi
done
exit $status
