// The trainer end to end on a tiny model: the loss falls, metrics.jsonl is written, and a run
// resumed from a mid-run checkpoint reproduces the uninterrupted run in every loss and every
// weight bit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "support/fixtures.h"
#include "train/trainer.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

using test::slurp;
TrainConfig tiny(const fs::path& data, const fs::path& out) { return test::tiny_train_config(data, out); }
std::vector<nlohmann::json> read_metrics(const fs::path& run) { return test::read_jsonl(run / "metrics.jsonl"); }

}  // namespace

TEST(Trainer, ResumeIsBitIdentical) {
  const fs::path root = test::fresh_dir("trainer_resume");
  test::make_byte_shards(root / "data", 40000);
  std::ostringstream log;

  // A: 20 steps straight through, saving at step 10 as well.
  TrainConfig a = tiny(root / "data", root / "a");
  a.save_every = 10;
  TrainResult ra = train(a, "", log);
  EXPECT_EQ(ra.steps, 20);
  ASSERT_TRUE(fs::exists(root / "a" / "step_000010" / "COMPLETE"));

  // B: resume A's step-10 checkpoint in another run directory, continue to 20.
  TrainConfig b = tiny(root / "data", root / "b");
  TrainResult rb = train(b, (root / "a" / "step_000010").string(), log);
  EXPECT_EQ(rb.steps, 20);

  auto ma = read_metrics(root / "a"), mb = read_metrics(root / "b");
  std::vector<double> la, lb;
  for (auto& m : ma)
    if (m.contains("loss") && m["step"].get<int>() > 10) la.push_back(m["loss"].get<double>());
  for (auto& m : mb)
    if (m.contains("loss")) lb.push_back(m["loss"].get<double>());
  ASSERT_EQ(la.size(), 10u);
  EXPECT_EQ(la, lb);  // exact: every loss of steps 11..20
  EXPECT_EQ(ra.val_loss, rb.val_loss);
  EXPECT_EQ(slurp(root / "a" / "step_000020" / "model.safetensors"),
            slurp(root / "b" / "step_000020" / "model.safetensors"));
  EXPECT_EQ(slurp(root / "a" / "step_000020" / "optimizer.safetensors"),
            slurp(root / "b" / "step_000020" / "optimizer.safetensors"));

  // The loss fell, and every step line carries the contract's keys.
  EXPECT_LT(ra.last_loss, ma.front()["loss"].get<double>() - 1.0);
  for (const char* k : {"step", "loss", "lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(ma.front().contains(k)) << k;
  int evals = 0;
  for (auto& m : ma) evals += m.contains("val_loss");
  EXPECT_EQ(evals, 2);  // steps 10 and 20
}

TEST(Trainer, ClearErrors) {
  const fs::path root = test::fresh_dir("trainer_errors");
  test::make_byte_shards(root / "data", 20000);
  std::ostringstream log;
  TrainConfig c = tiny(root / "data", root / "run");
  c.batch_size = 5;  // not a multiple of micro_batch_size 2
  EXPECT_THROW(train(c, "", log), Error);
  c = tiny(root / "nodata", root / "run");
  EXPECT_THROW(train(c, "", log), Error);
  c = tiny(root / "data", root / "run");
  c.vocab_size = 100;  // the byte shards hold ids up to 'z' and beyond
  EXPECT_THROW(train(c, "", log), Error);
  // Collectives and fp8 products by name only, and NCCL only between cuda devices.
  for (auto [key, value] : {std::pair<const char*, const char*>{"comm", "gloo"}, {"comm", "nccl"}, {"fp8_gemm", "fast"}}) {
    c = tiny(root / "data", root / "run");
    c.precision = "fp8";
    (std::string(key) == "comm" ? c.comm : c.fp8_gemm) = value;
    EXPECT_THROW(train(c, "", log), Error) << key << " " << value;
  }
}
