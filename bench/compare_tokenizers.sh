#!/usr/bin/env bash
# GPT-2 encoding throughput of meshlm (build/bench_tokenizer) and of js-tiktoken (installed from
# the npm registry into a temporary directory for this comparison only) on tiny-shakespeare,
# one after the other in one run; also meshlm's BPE training time for 4096 tokens.
# Usage: bench/compare_tokenizers.sh [build-dir]
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
"$BUILD/bench_tokenizer" --benchmark_counters_tabular=true 2>&1 | grep -E "gpt2_encode|bpe_train|Benchmark"
JS=$(mktemp -d /tmp/meshlm_js.XXXXXX)
trap 'rm -rf "$JS"' EXIT
cp bench/js/tiktoken_bench.mjs "$JS/"
(cd "$JS" && npm init -y >/dev/null && npm install --silent js-tiktoken@1.0.21 >/dev/null)
node "$JS/tiktoken_bench.mjs" data/tinyshakespeare.txt
