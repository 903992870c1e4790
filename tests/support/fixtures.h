// Small fixtures shared by the tests: models, on-disk data, run files, tokens.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/model.h"
#include "model/params.h"
#include "plan/plan.h"
#include "train/config.h"

namespace meshlm::test {

// A small model: L2, H2, C16, T8 and the given vocabulary (pick one that is not a multiple
// of 128 to exercise the padding).
ModelConfig tiny_model(int64_t vocab_size);
// The parallelism tests' model: n_layer blocks of 4 heads (split 2 or 4 ways), C32, T16, V50
// (padded to 128: the vocabulary splits too).
ModelConfig sharded_model(int64_t n_layer);
// The bound two fp32 computations of the same model (one sharded, split or pipelined) agree
// within, normwise per tensor: test_gpt's fp32 bound 10 (6L+4) sqrt(K) u, twice over, with K
// the longest reduction (4C, the padded vocabulary, or T).
double fp32_model_bound(const ModelConfig& c, int64_t T);
// A layout for the model tests: tp ranks with GPT-2's sharding rules, sequence parallelism,
// recomputation, and a pipeline split (empty: one stage; else pp = its size).
Plan model_plan(int tp = 1, bool sequence_parallel = false, Recompute recompute = Recompute::none,
                std::vector<int64_t> split = {});
// The same for any family: the config's own sharding rules (model/family.h).
Plan model_plan(const ModelConfig& c, int tp, bool sequence_parallel = false, Recompute recompute = Recompute::none,
                std::vector<int64_t> split = {});
// The Llama tests' model: n_layer blocks, 4 query heads and n_kv_head key/value heads, C32,
// SwiGLU width 64, T16, V50, rope_theta 10000, its own LM head.
ModelConfig llama_model(int64_t n_layer, int64_t n_kv_head = 2);
// GPT-2's parameter table (the whole model) on tensor-parallel rank tp_rank of tp.
ParamTable gpt2_table(const ModelConfig& c, int tp = 1, int tp_rank = 0);
// The whole model's gradient check (test_gpt, test_llama): m in double on the reference backend,
// its 1-D parameters (biases, norms) moved off their init so their gradients matter, backward()
// against central differences (h = 1e-5) of the loss at 5 elements of every parameter, within
// 1e-7 times the largest gradient. Returns the number of elements checked (gtest failures name
// the parameter and element; `what` prefixes them).
int check_gradient_by_finite_differences(Model& m, const std::vector<int32_t>& x, const std::vector<int32_t>& y,
                                         int64_t B, int64_t T, const std::string& what = "");
// A fresh empty directory under the system temp dir.
std::filesystem::path fresh_dir(const std::string& name);
// Byte-level train/val shards from a repetitive pseudo-text of `bytes` bytes, in `dir`.
void make_byte_shards(const std::filesystem::path& dir, int64_t bytes);
// The tiny training run of the trainer tests: L2 H2 C32 T32, a global batch of 4 in two
// micro-batches, shuffled, 20 steps, evaluating every 10, the GEMM peak given (not measured).
TrainConfig tiny_train_config(const std::filesystem::path& data, const std::filesystem::path& out);
// One JSON object per line (metrics.jsonl, numerics.jsonl); the whole file as bytes.
std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p);
std::string slurp(const std::filesystem::path& p);
// n token ids in [0, V), pseudo-random from seed.
std::vector<int32_t> random_tokens(int64_t n, int64_t V, uint64_t seed);

}  // namespace meshlm::test
