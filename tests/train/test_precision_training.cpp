// The precision modes end to end on a tiny model (GPT-2, and Llama with multi-query attention):
// every mode resumes bit-exactly, a checkpoint
// of one mode starts a run in another, a planted inf in one gradient makes the fp16 run skip
// exactly that step, and the numerics report is written and rendered.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "precision/numerics.h"
#include "support/fixtures.h"
#include "train/trainer.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

using test::read_jsonl;
using test::slurp;

// The trainer tests' tiny run, 12 steps saved at 6, evaluated at the end, in `precision`.
TrainConfig tiny(const fs::path& data, const fs::path& out, const std::string& precision) {
  TrainConfig c = test::tiny_train_config(data, out);
  c.steps = 12;
  c.eval_every = 0;
  c.save_every = 6;
  c.precision = precision;
  // The pure-fp16 recipe with the default eps = 1e-8 (0 in fp16) dies at step 2 (a zero
  // gradient gives 0/0); eps = 1e-4 is its usual repair and lets it train for these steps.
  if (precision == "fp16-pure") c.eps = 1e-4;
  return c;
}

// The step lines of metrics.jsonl (evaluation lines left out).
std::vector<nlohmann::json> step_lines(const fs::path& run) {
  std::vector<nlohmann::json> out;
  for (auto& m : read_jsonl(run / "metrics.jsonl"))
    if (m.contains("loss")) out.push_back(m);
  return out;
}

std::vector<double> losses_after(const fs::path& run, int64_t step) {
  std::vector<double> out;
  for (auto& m : read_jsonl(run / "metrics.jsonl"))
    if (m.contains("loss") && m["step"].get<int64_t>() > step) out.push_back(m["loss"].get<double>());
  return out;
}

fs::path shared_data() {
  static const fs::path root = [] {
    fs::path r = test::fresh_dir("precision_training");
    test::make_byte_shards(r / "data", 40000);
    return r;
  }();
  return root;
}

struct Mode {
  std::string precision;
  int64_t stochastic_rounding = 0, master_weights = 1;
  std::string arch = "gpt2";  // llama: 2 query heads over 1 kv head, SwiGLU 64
  std::string plan;           // precision_plan
  std::string fp8_gemm = "auto";
  std::string name() const {
    std::string n = precision + (stochastic_rounding ? "_sr" : "") + (master_weights ? "" : "_no_master") +
                    (arch == "gpt2" ? "" : "_" + arch) + (plan.empty() ? "" : "_plan") +
                    (fp8_gemm == "auto" ? "" : "_" + fp8_gemm);
    for (char& ch : n)
      if (ch == '-' || ch == '+') ch = '_';
    return n;
  }
};

class PrecisionModes : public ::testing::TestWithParam<Mode> {};

}  // namespace

// 12 steps straight through vs 6 steps + resume: every loss, the weights and the Adam state
// agree bit for bit, in every mode (the scaler's and fp8's state are in the checkpoint; the
// compute copy is re-derived from the masters with the same rounding).
TEST_P(PrecisionModes, ResumeIsBitIdentical) {
  const Mode& mode = GetParam();
  const fs::path root = shared_data() / mode.name();
  std::ostringstream log;
  TrainConfig a = tiny(shared_data() / "data", root / "a", mode.precision);
  a.stochastic_rounding = mode.stochastic_rounding;
  a.master_weights = mode.master_weights;
  a.arch = mode.arch;
  a.precision_plan = mode.plan;
  a.fp8_gemm = mode.fp8_gemm;
  if (mode.arch == "llama") {
    a.n_kv_head = 1;
    a.ffn_hidden = 64;
  }
  TrainResult ra = train(a, "", log, true);
  ASSERT_EQ(ra.steps, 12) << log.str();
  TrainConfig b = a;
  b.out = (root / "b").string();
  TrainResult rb = train(b, (root / "a" / "step_000006").string(), log, true);
  ASSERT_EQ(rb.steps, 12);
  const auto la = losses_after(root / "a", 6), lb = losses_after(root / "b", 6);
  ASSERT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb);
  for (const char* f : {"model.safetensors", "optimizer.safetensors"})
    EXPECT_EQ(slurp(root / "a" / "step_000012" / f), slurp(root / "b" / "step_000012" / f)) << f;
  // And it trained: the loss fell from ln 256 = 5.5.
  EXPECT_LT(ra.last_loss, 5.0) << mode.name();
  if (mode.precision == "fp16-pure" || !mode.master_weights) {
    // Weights held in 16 bits: every saved master value is representable there.
    const std::string bytes = slurp(root / "a" / "step_000012" / "model.safetensors");
    uint64_t hlen;
    std::memcpy(&hlen, bytes.data(), 8);
    const DType fmt = mode.precision == "fp16-pure" ? DType::fp16 : DType::bf16;
    for (size_t off = 8 + hlen; off + 4 <= bytes.size(); off += 4) {
      float x;
      std::memcpy(&x, bytes.data() + off, 4);
      ASSERT_EQ(x, bits_to_float(fmt, float_to_bits(fmt, x))) << "offset " << off;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, PrecisionModes,
                         ::testing::Values(Mode{"bf16"}, Mode{"fp16"}, Mode{"fp16-pure"}, Mode{"fp8"},
                                           Mode{"bf16", 1, 1}, Mode{"bf16", 1, 0}, Mode{"fp32", 0, 1, "llama"},
                                           Mode{"bf16", 0, 1, "llama"}, Mode{"fp16", 0, 1, "llama"},
                                           Mode{"fp16-pure", 0, 1, "llama"}, Mode{"fp8", 0, 1, "llama"},
                                           Mode{"fp8", 0, 1, "gpt2", "", "real"}, Mode{"fp8", 0, 1, "llama", "", "real"},
                                           Mode{"bf16", 1, 0, "llama"}, Mode{"fp8-current"}, Mode{"fp8-rowwise"},
                                           Mode{"mxfp8"}, Mode{"mxfp6"}, Mode{"mxfp4"}, Mode{"nvfp4+recipe"},
                                           Mode{"nvfp4+recipe", 0, 1, "llama"},
                                           Mode{"bf16", 0, 1, "gpt2", "layers.0,head: mxfp8; attn: nvfp4+sr; *: mxfp4+2d"}),
                         [](const auto& info) { return info.param.name(); });

// fp8 with real products (gemm_fp8 on one-byte codes; on the cpu backend widened to fp32) and
// simulated ones (bf16 GEMMs on the values read back) multiply the same values: only the order
// of the fp32 sums differs, which moves a bf16-rounded output by at most an ulp (2^-8
// relative). Over 12 Adam steps the losses stay within 2% (the cpu-vs-cuda bf16 tolerance of
// scripts/gpu_check.sh; measured here: identical, since sums of products of 4-bit significands
// are mostly exact in fp32); the metrics say which ran, and that neither ran at fp8 speed.
TEST(Precision, RealFp8GemmsTrainLikeTheSimulatedOnes) {
  const fs::path root = shared_data() / "fp8_real_vs_simulated";
  std::ostringstream log;
  std::vector<std::vector<double>> losses;
  for (const char* how : {"simulated", "real"}) {
    TrainConfig c = tiny(shared_data() / "data", root / how, "fp8");
    c.fp8_gemm = how;
    const TrainResult r = train(c, "", log, true);
    ASSERT_EQ(r.steps, 12) << log.str();
    EXPECT_EQ(r.fp8_real_gemms, std::string(how) == "real");
    EXPECT_TRUE(r.fp8_simulated);  // either way: a CPU has no fp8 arithmetic
    const auto lines = step_lines(root / how);
    EXPECT_EQ(lines.front()["fp8_gemm"], how);
    EXPECT_TRUE(lines.front().contains("quantization_simulated"));
    losses.push_back(losses_after(root / how, 0));
  }
  ASSERT_EQ(losses[0].size(), losses[1].size());
  for (size_t i = 0; i < losses[0].size(); i++)
    EXPECT_NEAR(losses[1][i], losses[0][i], 0.02 * losses[0][i]) << "step " << i + 1;
}

// Weights are stored as fp32 masters, so a checkpoint of any mode starts a run in any other.
TEST(Precision, CheckpointOfOneModeStartsAnother) {
  const fs::path root = shared_data() / "cross";
  std::ostringstream log;
  TrainConfig a = tiny(shared_data() / "data", root / "fp16", "fp16");
  train(a, "", log, true);
  for (const std::string p : {"fp32", "bf16", "fp8"}) {
    TrainConfig b = tiny(shared_data() / "data", root / p, p);
    std::ostringstream blog;
    TrainResult r = train(b, (root / "fp16" / "step_000006").string(), blog, true);
    EXPECT_EQ(r.steps, 12);
    EXPECT_NE(blog.str().find("trained in fp16, continuing in " + p), std::string::npos) << blog.str();
    // It continues from the checkpoint's model: the first loss is close to fp16's own at step 7.
    const auto own = losses_after(root / "fp16", 6), other = losses_after(root / p, 6);
    EXPECT_NEAR(other.front(), own.front(), 0.05 * own.front()) << p;
  }
  // And back: an fp32 checkpoint into fp16 starts the loss scaler fresh at 2^16.
  TrainConfig c = tiny(shared_data() / "data", root / "back", "fp16");
  train(c, (root / "fp32" / "step_000012").string(), log, true);  // already at step 12
  TrainConfig d = c;
  d.steps = 14;
  d.out = (root / "back2").string();
  train(d, (root / "fp32" / "step_000012").string(), log, true);
  const auto m = step_lines(root / "back2");
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(m.back()["loss_scale"].get<double>(), 65536.0);
}

// A planted inf in one gradient (inject_inf_at_step) makes fp16 skip exactly that step: its
// metrics line says so, the weights do not move during it and do move in the steps around it,
// and the next step trains normally. With hysteresis 1 the scale halves at once.
TEST(Precision, OverflowSkipsExactlyThatStep) {
  const fs::path root = shared_data() / "overflow";
  std::ostringstream log;
  TrainConfig c = tiny(shared_data() / "data", root, "fp16");
  c.steps = 6;
  c.save_every = 1;
  c.inject_inf_at_step = 4;
  c.loss_scale_hysteresis = 1;
  TrainResult r = train(c, "", log, true);
  EXPECT_EQ(r.steps, 6);
  EXPECT_EQ(r.skipped_steps, 1);
  EXPECT_NE(log.str().find("overflow at step 4"), std::string::npos) << log.str();
  const auto m = step_lines(root);
  ASSERT_EQ(m.size(), 6u);
  for (const auto& line : m) {
    const int64_t step = line["step"].get<int64_t>();
    EXPECT_EQ(line.contains("skipped"), step == 4) << step;
    EXPECT_EQ(line["loss_scale"].get<double>(), step <= 4 ? 65536.0 : 32768.0) << step;
  }
  auto weights = [&](int s) { return slurp(root / ("step_00000" + std::to_string(s)) / "model.safetensors"); };
  EXPECT_NE(weights(2), weights(3));
  EXPECT_EQ(weights(3), weights(4));  // the skipped step
  EXPECT_NE(weights(4), weights(5));
}

TEST(Precision, ClearErrors) {
  const fs::path root = shared_data() / "errors";
  std::ostringstream log;
  TrainConfig c = tiny(shared_data() / "data", root, "fp64");
  try {
    train(c, "", log, true);
    FAIL() << "fp64 is not a precision mode";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("precision must be fp32, bf16, fp16, fp16-pure, fp8 or a GEMM format"), std::string::npos);
  }
  c.precision = "fp16";
  c.master_weights = 0;
  EXPECT_THROW(train(c, "", log, true), Error);  // bf16 only
  // The naive recipe with its default eps: dies at step 2 with a message saying so.
  c = tiny(shared_data() / "data", root, "fp16-pure");
  c.eps = 1e-8;
  try {
    train(c, "", log, true);
    FAIL() << "expected the pure-fp16 recipe to diverge";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pure-fp16 recipe diverged"), std::string::npos) << e.what();
  }
}

// --numerics-report N writes one record per (layer, kind) every N steps; the renderer prints
// a table and writes an SVG with one panel per kind.
TEST(Precision, NumericsReportIsWrittenAndRendered) {
  const fs::path root = shared_data() / "numerics";
  std::ostringstream log;
  TrainConfig c = tiny(shared_data() / "data", root, "fp16");
  c.steps = 4;
  c.numerics_report = 2;
  train(c, "", log, true);
  const auto rows = read_jsonl(root / "numerics.jsonl");
  // layers: embedding, h.0, h.1, final; kinds: weights, grads, activations -> 12 per report.
  ASSERT_EQ(rows.size(), 24u);
  for (const auto& r : rows) {
    EXPECT_EQ(r["format"], "fp16");
    EXPECT_EQ(r["loss_scale"].get<double>(), 65536.0);
    EXPECT_GT(r["amax"].get<double>(), 0.0);
    for (const char* k : {"zero", "underflow", "subnormal", "overflow"}) {
      EXPECT_GE(r[k].get<double>(), 0.0);
      EXPECT_LE(r[k].get<double>(), 1.0);
    }
  }
  std::ostringstream table;
  render_numerics_report((root / "numerics.jsonl").string(), (root / "report.svg").string(), table);
  EXPECT_NE(table.str().find("numerics at step 4"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("h.1"), std::string::npos);
  const std::string svg = slurp(root / "report.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("grads: amax"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

// The backend's tensor_stats (cpu and reference) classifies values against a format's limits.
TEST(Precision, TensorStatsClassifyAgainstTheFormat) {
  for (const char* backend : {"cpu", "reference"}) {
  SCOPED_TRACE(backend);
  const auto tensor_stats = [be = std::shared_ptr<Backend>(make_backend(backend))](DType f, DType st, const void* x,
                                                                                      int64_t n) {
    return be->tensor_stats(f, st, x, n);
  };
  const std::vector<float> x = {0.0f, 1e-9f, 3e-8f, 1e-6f, 1.0f, -70000.0f, INFINITY, 2.0f};
  const TensorStats s = tensor_stats(DType::fp16, DType::fp32, x.data(), int64_t(x.size()));
  EXPECT_EQ(s.n, 8);
  EXPECT_EQ(s.zero, 1);       // 0
  EXPECT_EQ(s.underflow, 1);  // 1e-9 < 2^-25 rounds to 0 in fp16
  EXPECT_EQ(s.subnormal, 2);  // 3e-8 and 1e-6 < 2^-14
  EXPECT_EQ(s.overflow, 2);   // -70000 > 65504, inf
  EXPECT_EQ(s.amax, 2.0);
  const TensorStats b = tensor_stats(DType::bf16, DType::fp32, x.data(), int64_t(x.size()));
  EXPECT_EQ(b.underflow + b.subnormal, 0);
  EXPECT_EQ(b.overflow, 1);  // only the inf
  EXPECT_EQ(b.amax, 70000.0);
  }
}
