#include "support/support.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "core/rng.h"

namespace meshlm::test {

namespace {

template <class A>
::testing::AssertionResult report(const A* a, const double* b, int64_t n,
                                  const std::function<double(int64_t)>& bound) {
  double worst = 0;
  int64_t worst_i = -1, bad = 0;
  std::string first;
  for (int64_t i = 0; i < n; i++) {
    const double err = std::fabs(double(a[i]) - b[i]);
    const double lim = bound(i);
    const double ratio = lim > 0 ? err / lim : (err == 0 ? 0 : INFINITY);
    if (!(err <= lim)) {  // also catches NaN
      if (bad < 5) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "  [%lld] got %.9g want %.9g err %.3g bound %.3g\n",
                      (long long)i, double(a[i]), b[i], err, lim);
        first += buf;
      }
      bad++;
    }
    if (!(ratio <= worst)) {
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_i = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "worst " << worst << "x of bound";
  char buf[200];
  std::snprintf(buf, sizeof buf, "%lld of %lld elements outside their bound; worst at [%lld]: %.3gx the bound\n",
                (long long)bad, (long long)n, (long long)worst_i, worst);
  return ::testing::AssertionFailure() << buf << first;
}

}  // namespace

::testing::AssertionResult within(const std::vector<float>& got, const std::vector<double>& want,
                                  const std::vector<double>& bound) {
  if (got.size() != want.size() || got.size() != bound.size())
    return ::testing::AssertionFailure() << "size mismatch";
  return report(got.data(), want.data(), int64_t(got.size()), [&](int64_t i) { return bound[i]; });
}

::testing::AssertionResult within(const std::vector<double>& got, const std::vector<double>& want,
                                  const std::vector<double>& bound) {
  if (got.size() != want.size() || got.size() != bound.size())
    return ::testing::AssertionFailure() << "size mismatch";
  return report(got.data(), want.data(), int64_t(got.size()), [&](int64_t i) { return bound[i]; });
}

::testing::AssertionResult all_close(const float* a, const double* b, int64_t n, double atol,
                                     double rtol) {
  return report(a, b, n, [&](int64_t i) { return atol + rtol * std::fabs(b[i]); });
}

::testing::AssertionResult all_close(const double* a, const double* b, int64_t n, double atol,
                                     double rtol) {
  return report(a, b, n, [&](int64_t i) { return atol + rtol * std::fabs(b[i]); });
}

std::vector<double> random_values(int64_t n, uint64_t seed, double lo, double hi) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * uniform01(seed, 99, uint64_t(i));
  return v;
}

std::vector<double> random_f32_values(int64_t n, uint64_t seed, double lo, double hi) {
  std::vector<double> v = random_values(n, seed, lo, hi);
  for (double& x : v) x = double(float(x));
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }
std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
std::vector<double> abs_values(const std::vector<double>& v) {
  std::vector<double> a(v.size());
  for (size_t i = 0; i < v.size(); i++) a[i] = std::fabs(v[i]);
  return a;
}

}  // namespace meshlm::test

// ---- fixtures ----
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "data/prepare.h"
#include "support/fixtures.h"
#include "model/gpt2.h"
#include "model/family.h"
#include "model/model.h"

namespace meshlm::test {

ModelConfig tiny_model(int64_t vocab_size) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.max_seq_len = 8;
  c.vocab_size = vocab_size;
  return c;
}

ModelConfig sharded_model(int64_t n_layer) {
  ModelConfig c;
  c.n_layer = n_layer;
  c.n_head = 4;
  c.n_embd = 32;
  c.max_seq_len = 16;
  c.vocab_size = 50;
  return c;
}

double fp32_model_bound(const ModelConfig& c, int64_t T) {
  const int64_t K = std::max<int64_t>({4 * c.n_embd, c.padded_vocab_size(), T});
  return 2 * 10 * (6 * c.n_layer + 4) * std::sqrt(double(K)) * kF32Eps;
}

std::filesystem::path fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("meshlm_test_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

void make_byte_shards(const std::filesystem::path& dir, int64_t bytes) {
  std::filesystem::create_directories(dir);
  const char* words[] = {"the ", "king ", "shall ", "not ", "sleep ", "tonight", ",\n", "my ", "lord. "};
  std::string text;
  for (int64_t i = 0; int64_t(text.size()) < bytes; i++) text += words[random_u32(1, 2, i) % 9];
  text.resize(bytes);
  std::ofstream(dir / "corpus.txt", std::ios::binary) << text;
  PrepareOptions o;
  o.inputs = {(dir / "corpus.txt").string()};
  o.output = dir.string();
  o.val_fraction = 0.2;
  prepare_shards(o);
}

Plan model_plan(int tp, bool sequence_parallel, Recompute recompute, std::vector<int64_t> split) {
  Plan p;
  p.mesh.tp = tp;
  p.mesh.pp = split.empty() ? 1 : int(split.size());
  p.sharding = gpt2_sharding();
  p.sequence_parallel = sequence_parallel;
  p.recompute = recompute;
  p.pp_split = std::move(split);
  return p;
}

Plan model_plan(const ModelConfig& c, int tp, bool sequence_parallel, Recompute recompute, std::vector<int64_t> split) {
  Plan p = model_plan(tp, sequence_parallel, recompute, std::move(split));
  p.sharding = sharding_rules(c, tp);
  return p;
}

int check_gradient_by_finite_differences(Model& m, const std::vector<int32_t>& x, const std::vector<int32_t>& y,
                                         int64_t B, int64_t T, const std::string& what) {
  double* p = m.params().as<double>();
  for (const auto& e : m.table().entries())
    if (e.shape.size() == 1)
      for (int64_t i = 0; i < e.numel(); i++) p[e.offset + i] += 0.1 * normal01(9, hash_name(e.name), i);
  m.zero_grad();
  m.forward(x.data(), y.data(), B, T, 1.0f);
  m.backward();
  const double* g = m.grads().as<double>();
  double gmax = 0;
  for (int64_t i = 0; i < m.grads().numel(); i++) gmax = std::max(gmax, std::fabs(g[i]));
  int checked = 0;
  for (const auto& e : m.table().entries())
    for (int64_t k = 0; k < 5; k++) {
      const int64_t i = e.offset + (k * 7919) % e.hf_numel();
      const double keep = p[i], h = 1e-5;
      p[i] = keep + h;
      const double lp = m.forward(x.data(), y.data(), B, T);
      p[i] = keep - h;
      const double lm = m.forward(x.data(), y.data(), B, T);
      p[i] = keep;
      EXPECT_NEAR(g[i], (lp - lm) / (2 * h), 1e-7 * gmax) << what << e.name << " element " << i - e.offset;
      checked++;
    }
  return checked;
}

ModelConfig llama_model(int64_t n_layer, int64_t n_kv_head) {
  ModelConfig c;
  c.arch = "llama";
  c.n_layer = n_layer;
  c.n_head = 4;
  c.n_kv_head = n_kv_head;
  c.n_embd = 32;
  c.ffn_hidden = 64;
  c.max_seq_len = 16;
  c.vocab_size = 50;
  c.rope_theta = 10000;
  return c;
}

ParamTable gpt2_table(const ModelConfig& c, int tp, int tp_rank) { return param_table(c, model_plan(tp), 0, tp_rank); }

TrainConfig tiny_train_config(const std::filesystem::path& data, const std::filesystem::path& out) {
  TrainConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.seq_len = 32;
  c.batch_size = 4;
  c.micro_batch_size = 2;  // two accumulation steps
  c.shuffle = 1;           // a resumed run must also continue the shuffled order
  c.lr = 3e-3;
  c.min_lr = 3e-4;
  c.warmup_steps = 3;
  c.steps = 20;
  c.eval_every = 10;
  c.eval_batches = 2;
  c.peak_gflops = 100;  // skip the measurement
  c.data = data.string();
  c.out = out.string();
  return c;
}

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  return lines;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<int32_t> random_tokens(int64_t n, int64_t V, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) t[size_t(i)] = int32_t(random_u32(seed, 5, uint64_t(i)) % uint64_t(V));
  return t;
}

}  // namespace meshlm::test
