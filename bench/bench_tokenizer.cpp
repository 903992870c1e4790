// Tokenizer throughput: GPT-2 encoding of tiny-shakespeare (MB/s of input, one thread), and
// training a 4096-token BPE vocabulary on it. Run from the repository root:
//   build/bench_tokenizer --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>

#include "data/bpe.h"
#include "data/bpe_train.h"

using namespace meshlm;

namespace {

std::string corpus() {
  std::ifstream in("data/tinyshakespeare.txt", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) throw std::runtime_error("run from the repository root (data/tinyshakespeare.txt)");
  return ss.str();
}

void gpt2_encode(benchmark::State& state) {
  const std::string text = corpus();
  BpeTokenizer tok = load_tokenizer("gpt2");
  size_t n = 0;
  for (auto _ : state) n = tok.encode(text).size();
  state.counters["MB/s"] = benchmark::Counter(double(text.size()) / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens"] = double(n);
}

void bpe_train_4096(benchmark::State& state) {
  const std::string text = corpus();
  BpeTrainOptions o;
  o.vocab_size = 4096;
  for (auto _ : state) benchmark::DoNotOptimize(train_bpe({text}, o).vocab_size());
}

}  // namespace

BENCHMARK(gpt2_encode)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(bpe_train_4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_MAIN();
