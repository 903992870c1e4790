// The stability rules (train/stability.h): the guard's findings on made-up numbers (spikes by
// z-score after the warmup, site saturation and flush rates, the worst site, its state), then
// each --on-instability action on a tiny run made to fail: fp16 with a static loss scale far
// too large (every gradient overflows) under warn, skip, rescale and stop, and e4m3 blocks
// forced to saturate (mxfp8 with the OCP scale rule) under promote, resumed bit-exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "precision/quant_recipe.h"
#include "support/fixtures.h"
#include "train/stability.h"
#include "train/trainer.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

StabilityConfig config(double z = 4, int64_t warmup = 10) {
  StabilityConfig c;
  c.z = z, c.warmup = warmup, c.window = 50;
  return c;
}

bool has(const std::vector<Instability>& v, const std::string& kind) {
  for (const Instability& i : v)
    if (i.kind == kind) return true;
  return false;
}

fs::path data_dir() {
  static const fs::path root = [] {
    fs::path r = test::fresh_dir("stability");
    test::make_byte_shards(r / "data", 40000);
    return r;
  }();
  return root;
}

// The tiny run of the trainer tests, 12 steps, saved at 6.
TrainConfig tiny(const std::string& name, const std::string& precision, const std::string& action) {
  TrainConfig c = test::tiny_train_config(data_dir() / "data", data_dir() / name);
  c.steps = 12;
  c.eval_every = 0;
  c.save_every = 6;
  c.precision = precision;
  c.on_instability = action;
  return c;
}

// fp16 with a static loss scale of 2^40: every scaled gradient overflows fp16.
TrainConfig overflowing(const std::string& name, const std::string& action) {
  TrainConfig c = tiny(name, "fp16", action);
  c.loss_scale = std::ldexp(1.0, 40);
  return c;
}

std::vector<nlohmann::json> steps_of(const fs::path& run) {
  std::vector<nlohmann::json> out;
  for (auto& m : test::read_jsonl(run / "metrics.jsonl"))
    if (m.contains("loss")) out.push_back(m);
  return out;
}

}  // namespace

TEST(StabilityGuard, SpikesByZScoreAfterTheWarmup) {
  StabilityGuard g(config(4, 10));
  for (int i = 0; i < 9; i++) g.accept(3.0 + 0.01 * (i % 3), 1.0 + 0.01 * (i % 2));
  EXPECT_TRUE(g.check(30.0, 1.0, false, nullptr).empty());  // 9 steps: still warming up
  g.accept(3.01, 1.0);
  EXPECT_TRUE(g.check(3.02, 1.0, false, nullptr).empty());
  const auto spike = g.check(3.5, 1.0, false, nullptr);  // ~60 standard deviations up
  ASSERT_EQ(spike.size(), 1u);
  EXPECT_EQ(spike[0].kind, "loss spike");
  EXPECT_GT(spike[0].score, 4.0);
  EXPECT_TRUE(has(g.check(3.0, 50.0, false, nullptr), "grad-norm spike"));
  EXPECT_TRUE(g.check(2.0, 0.5, false, nullptr).empty());  // a drop is no spike
  const auto nf = g.check(NAN, NAN, true, nullptr);
  ASSERT_EQ(nf.size(), 1u);
  EXPECT_EQ(nf[0].kind, "nonfinite");
  // State round trip: the same findings after set_state.
  StabilityGuard h(config(4, 10));
  h.set_state(g.state());
  EXPECT_EQ(h.check(3.5, 1.0, false, nullptr).size(), 1u);
  g.accept(NAN, 1.0);  // a non-finite step never joins the history
  EXPECT_EQ(g.state()["losses"].size(), 10u);
}

// Site rules on made-up counts (n, overflow, underflow for x, w and g per site): saturation is
// judged on every operand, flushing to zero on the input and the weight only.
TEST(StabilityGuard, SiteRatesJudgeOverflowEverywhereAndUnderflowOnForwardOperands) {
  auto be = make_cpu_backend();
  Model m(test::tiny_model(256), *be, DType::bf16);
  QuantRecipe q(m, PrecisionPlan{}, "mxfp4", 1);
  ASSERT_GE(q.sites().size(), 3u);
  std::vector<double> c(q.sites().size() * QuantRecipe::kCounts, 0.0);
  auto set = [&](size_t site, int op, double n, double over, double under) {
    c[site * QuantRecipe::kCounts + 3 * size_t(op)] = n;
    c[site * QuantRecipe::kCounts + 3 * size_t(op) + 1] = over;
    c[site * QuantRecipe::kCounts + 3 * size_t(op) + 2] = under;
  };
  set(0, 0, 1000, 0, 300);  // 30% of x flushed: an underflow finding
  set(1, 2, 1000, 0, 900);  // 90% of g flushed: not judged
  set(2, 1, 1000, 5, 0);    // 0.5% of w saturated: an overflow finding
  set(2, 2, 1000, 2, 0);    // 0.2% of g saturated: another
  q.set_step_counts(c);
  StabilityGuard g(config());
  const auto f = g.check(3.0, 1.0, false, &q);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].kind, "underflow");
  EXPECT_EQ(f[0].site, 0);
  EXPECT_EQ(f[1].kind, "overflow");
  EXPECT_EQ(f[1].site, 2);
  EXPECT_EQ(f[2].operand, std::string("g"));
  EXPECT_EQ(StabilityGuard::worst_site(q), 2);
}

TEST(StabilityGuard, ActionNamesAndLimits) {
  EXPECT_EQ(instability_action_from_name("promote"), InstabilityAction::promote);
  EXPECT_STREQ(instability_action_name(InstabilityAction::rescale), "rescale");
  EXPECT_THROW(instability_action_from_name("panic"), Error);
  StabilityConfig bad = config();
  bad.warmup = 1;
  EXPECT_THROW(bad.validate(), Error);
}

// warn: found and logged, but the overflowing update is applied: the weights go NaN and the
// trainer's own check stops the run at the next step (the naive recipe's failure, shown).
TEST(StabilityActions, WarnLogsButApplies) {
  TrainConfig c = overflowing("warn", "warn");
  std::ostringstream log;
  EXPECT_THROW(train(c, "", log, true), Error);
  EXPECT_NE(log.str().find("instability step 1 | nonfinite"), std::string::npos) << log.str();
  const auto s = steps_of(c.out);
  ASSERT_FALSE(s.empty());
  EXPECT_FALSE(s.front().contains("skipped"));
  EXPECT_EQ(s.front()["instability"][0], "nonfinite");
  // The numerics report records the event.
  int events = 0;
  for (auto& e : test::read_jsonl(fs::path(c.out) / "numerics.jsonl")) events += e.contains("event");
  EXPECT_GE(events, 1);
}

// skip: no step is applied (the loss scale never changes, so every step overflows).
TEST(StabilityActions, SkipAppliesNoOverflowingStep) {
  TrainConfig c = overflowing("skip", "skip");
  std::ostringstream log;
  TrainResult r = train(c, "", log, true);
  for (const auto& s : steps_of(c.out)) EXPECT_TRUE(s.value("skipped", false));
  EXPECT_TRUE(std::isfinite(r.last_loss));
  EXPECT_GT(r.last_loss, 5.0);  // untrained: ln 256 = 5.5
}

// rescale: each overflow halves the static scale and skips; once it fits fp16 the run trains.
TEST(StabilityActions, RescaleRecovers) {
  TrainConfig c = overflowing("rescale", "rescale");
  c.steps = 40;
  c.save_every = 0;
  std::ostringstream log;
  TrainResult r = train(c, "", log, true);
  const auto s = steps_of(c.out);
  EXPECT_TRUE(s.front().value("skipped", false));
  EXPECT_FALSE(s.back().value("skipped", false)) << log.str();
  EXPECT_LT(s.back()["loss_scale"].get<double>(), std::ldexp(1.0, 40));
  EXPECT_LT(r.last_loss, 5.0);
  EXPECT_NE(log.str().find("loss scale halved"), std::string::npos);
}

// stop: a checkpoint of the state before the step, and an error naming where.
TEST(StabilityActions, StopSavesAndNamesTheLayer) {
  TrainConfig c = overflowing("stop", "stop");
  std::ostringstream log;
  try {
    train(c, "", log, true);
    FAIL() << "expected the run to stop";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("instability at step 1"), std::string::npos) << m;
    EXPECT_NE(m.find("transformer."), std::string::npos) << m;  // a parameter of the model
  }
  EXPECT_TRUE(fs::exists(fs::path(c.out) / "step_000000" / "model.safetensors"));
}

// promote: e4m3 blocks under the OCP rule saturate; the sites move to bf16 at step 1, the
// promotion is in the checkpoint, and a resumed run continues with it bit-exactly.
TEST(StabilityActions, PromoteRecoversAndResumesBitExactly) {
  TrainConfig a = tiny("promote_a", "mxfp8+ocp", "promote");
  std::ostringstream log;
  TrainResult ra = train(a, "", log, true);
  EXPECT_NE(log.str().find("promoted"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("-> bf16"), std::string::npos) << log.str();
  const auto s = steps_of(a.out);
  EXPECT_EQ(s.front()["instability_action"], "promote");
  for (size_t i = 1; i < s.size(); i++) EXPECT_FALSE(s[i].contains("instability")) << "step " << i + 1;
  EXPECT_LT(ra.last_loss, 5.0);
  TrainConfig b = a;
  b.out = (data_dir() / "promote_b").string();
  train(b, (fs::path(a.out) / "step_000006").string(), log, true);
  std::vector<double> la, lb;
  for (const auto& m : steps_of(a.out))
    if (m["step"].get<int64_t>() > 6) la.push_back(m["loss"].get<double>());
  for (const auto& m : steps_of(b.out))
    if (m["step"].get<int64_t>() > 6) lb.push_back(m["loss"].get<double>());
  ASSERT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(test::slurp(fs::path(a.out) / "step_000012" / "model.safetensors"),
            test::slurp(fs::path(b.out) / "step_000012" / "model.safetensors"));
}
