// Whole training runs on the guarded cpu backend (backend/guarded.h), one rank, every
// precision: nothing above the backend reads or writes tensor memory (a host access would kill
// the test with the address), and the guard changes no number: every loss, eval loss and grad
// norm equals the plain cpu backend's run bit for bit. Each run also writes the numerics
// report, evaluates, saves a checkpoint and resumes from it under the guard. The layouts
// (dp, tp, pp, ZeRO-1) run guarded under mpirun in tests/parallel/guarded_test.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "support/fixtures.h"
#include "train/trainer.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

fs::path shared_data() {
  static const fs::path root = [] {
    fs::path r = test::fresh_dir("guarded_training");
    test::make_byte_shards(r / "data", 40000);
    return r;
  }();
  return root;
}

// metrics.jsonl without the timing fields.
std::vector<nlohmann::json> numbers(const fs::path& run) {
  std::vector<nlohmann::json> out;
  for (auto m : test::read_jsonl(run / "metrics.jsonl")) {
    for (const char* k : {"ms_per_step", "tokens_per_s", "mfu", "rss_mib"}) m.erase(k);
    out.push_back(m);
  }
  return out;
}

class GuardedTraining : public ::testing::TestWithParam<const char*> {};

TEST_P(GuardedTraining, SameNumbersAsTheCpuBackend) {
  const std::string param = GetParam();
  const bool fp8_real = param == "fp8-real";  // fp8 with real fp8 GEMMs (gemm_fp8 on codes)
  const std::string precision = fp8_real ? "fp8" : param;
  const fs::path root = test::fresh_dir(std::string("guarded_") + (param == "fp16-pure" ? "fp16p" : param));
  auto config = [&](const std::string& backend) {
    TrainConfig c = test::tiny_train_config(shared_data() / "data", root / backend);
    c.steps = 6;
    c.eval_every = 3;
    c.save_every = 3;
    c.numerics_report = 2;
    c.precision = precision;
    c.backend = backend;
    if (fp8_real) c.fp8_gemm = "real";
    if (precision == "fp16-pure") c.eps = 1e-4;  // the recipe's usual repair (test_precision_training)
    if (precision == "fp16") c.inject_inf_at_step = 2;  // a skipped step: the overflow path too
    return c;
  };
  std::ostringstream log;
  train(config("cpu"), "", log);
  const TrainResult g = train(config("cpu-guarded"), "", log);
  EXPECT_EQ(g.steps, 6) << log.str();
  EXPECT_EQ(numbers(root / "cpu-guarded"), numbers(root / "cpu"));
  EXPECT_EQ(test::slurp(root / "cpu-guarded" / "numerics.jsonl"), test::slurp(root / "cpu" / "numerics.jsonl"));
  // Resume under the guard from step 3: the continuation is the uninterrupted run's.
  TrainConfig r = config("cpu-guarded");
  r.out = (root / "resumed").string();
  train(r, (root / "cpu-guarded" / "step_000003").string(), log);
  const auto a = numbers(root / "cpu"), b = numbers(root / "resumed");
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(std::vector<nlohmann::json>(a.end() - long(b.size()), a.end()), b);
}

INSTANTIATE_TEST_SUITE_P(Precisions, GuardedTraining,
                         ::testing::Values("fp32", "bf16", "fp16", "fp16-pure", "fp8", "fp8-real"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
