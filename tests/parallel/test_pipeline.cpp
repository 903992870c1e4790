// Pipeline parallelism without MPI. The schedules as data: every micro-batch forwarded and
// backwarded once per stage, sends matching receives in order, no deadlock when the stages run
// together (receives block, sends do not), 1F1B's in-flight bound, and the idle fraction of a
// unit-time simulation equal to (pp - 1) / (m + pp - 1). Then the stages themselves, on threads
// as ranks: a pp = 2, 3, 4 pipeline (even and uneven splits, GPipe and 1F1B, each recompute
// setting) gives the whole model's loss and gradients bit for bit, except the tied
// embedding, whose two halves (embedding on the first stage, head on the last) are summed in
// another order; tp 2 x pp 2 within the fp32 bound of test_tensor_parallel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "train/config.h"
#include "parallel/mesh.h"
#include "parallel/pipeline.h"
#include "support/fixtures.h"
#include "support/local_group.h"
#include "support/support.h"
#include "train/pipeline_executor.h"

using namespace meshlm;

namespace {

// Runs every stage's action list together: a receive waits for the matching send; sends never
// wait. A chunk's forward and backward take one time unit each (a whole stage's v units),
// communication none. Virtual stage c pp + s is stage s's chunk c: its activation goes to the
// next virtual stage (the next stage's chunk c, or the first stage's chunk c + 1), its input
// gradient back. Returns each stage's finishing time; throws on a mismatch or a deadlock.
std::vector<double> simulate(PipelineSchedule s, int pp, int m, int v, double* makespan) {
  std::vector<std::vector<PipeAction>> lists;
  for (int st = 0; st < pp; st++) lists.push_back(pipeline_actions(s, st, pp, m, v));
  std::vector<size_t> pc(size_t(pp), 0);
  std::vector<double> clock(size_t(pp), 0.0);
  // (kind of message, micro-batch, to virtual stage) -> time it was sent
  std::map<std::tuple<int, int, int>, double> sent;
  bool progress = true;
  while (progress) {
    progress = false;
    for (int st = 0; st < pp; st++) {
      while (pc[size_t(st)] < lists[size_t(st)].size()) {
        const PipeAction& a = lists[size_t(st)][pc[size_t(st)]];
        const int vs = a.chunk * pp + st;
        if (a.chunk < 0 || a.chunk >= v) throw Error("no such chunk");
        double& t = clock[size_t(st)];
        if (a.kind == PipeAction::recv_activation || a.kind == PipeAction::recv_grad) {
          const int kind = a.kind == PipeAction::recv_activation ? 0 : 1;
          auto it = sent.find({kind, a.micro_batch, vs});
          if (it == sent.end()) break;  // blocked until the peer sends
          t = std::max(t, it->second);
          sent.erase(it);
        } else if (a.kind == PipeAction::send_activation) {
          if (vs + 1 >= pp * v) throw Error("the last virtual stage sends an activation");
          sent[{0, a.micro_batch, vs + 1}] = t;
        } else if (a.kind == PipeAction::send_grad) {
          if (vs == 0) throw Error("the first virtual stage sends a gradient");
          sent[{1, a.micro_batch, vs - 1}] = t;
        } else {
          t += 1.0;  // forward or backward of one chunk
        }
        pc[size_t(st)]++;
        progress = true;
      }
    }
  }
  for (int st = 0; st < pp; st++)
    if (pc[size_t(st)] != lists[size_t(st)].size())
      throw Error("deadlock: stage " + std::to_string(st) + " stuck at action " + std::to_string(pc[size_t(st)]));
  if (!sent.empty()) throw Error("a message was sent and never received");
  *makespan = 0;
  for (double t : clock) *makespan = std::max(*makespan, t);
  return clock;
}

// Every (chunk, micro-batch) forwarded and backwarded once, its receive just before and its send
// just after, backward after forward; each virtual stage's sends in the order the next receives.
void check_actions(PipelineSchedule s, int pp, int m, int v, const std::string& what) {
  auto list = [&](int st) { return pipeline_actions(s, st, pp, m, v); };
  // Virtual stage -> the micro-batches it sends (activations, gradients) and receives, in order.
  std::map<int, std::vector<int>> sent_a, recv_a, sent_g, recv_g;
  for (int st = 0; st < pp; st++) {
    const auto a = list(st);
    std::vector<int> fwd(size_t(m * v), 0), bwd(size_t(m * v), 0);
    for (size_t k = 0; k < a.size(); k++) {
      const int i = a[k].micro_batch, c = a[k].chunk, vs = c * pp + st;
      ASSERT_TRUE(i >= 0 && i < m && c >= 0 && c < v) << what;
      const size_t id = size_t(c * m + i);
      const bool first = vs == 0, last = vs == pp * v - 1;
      if (a[k].kind == PipeAction::forward) {
        fwd[id]++;
        if (!first) { EXPECT_EQ(a[k - 1], (PipeAction{PipeAction::recv_activation, i, c})) << what; }
        if (!last) { EXPECT_EQ(a[k + 1], (PipeAction{PipeAction::send_activation, i, c})) << what; }
      }
      if (a[k].kind == PipeAction::backward) {
        EXPECT_EQ(fwd[id], 1) << what << ": backward " << i << " before its forward";
        bwd[id]++;
        if (!last) { EXPECT_EQ(a[k - 1], (PipeAction{PipeAction::recv_grad, i, c})) << what; }
        if (!first) { EXPECT_EQ(a[k + 1], (PipeAction{PipeAction::send_grad, i, c})) << what; }
      }
      if (a[k].kind == PipeAction::send_activation) sent_a[vs].push_back(i);
      if (a[k].kind == PipeAction::recv_activation) recv_a[vs].push_back(i);
      if (a[k].kind == PipeAction::send_grad) sent_g[vs].push_back(i);
      if (a[k].kind == PipeAction::recv_grad) recv_g[vs].push_back(i);
    }
    for (size_t id = 0; id < fwd.size(); id++)
      EXPECT_TRUE(fwd[id] == 1 && bwd[id] == 1) << what << " chunk " << id / size_t(m) << " mb " << id % size_t(m);
    // Each chunk's backwards in micro-batch order: gradients accumulate as on one rank.
    for (int c = 0; c < v; c++) {
      int next = 0;
      for (const auto& x : a)
        if (x.kind == PipeAction::backward && x.chunk == c) {
          EXPECT_EQ(x.micro_batch, next++) << what;
        }
    }
  }
  for (int vs = 0; vs + 1 < pp * v; vs++) {
    EXPECT_EQ(sent_a[vs], recv_a[vs + 1]) << what << " virtual stage " << vs;
    EXPECT_EQ(sent_g[vs + 1], recv_g[vs]) << what << " virtual stage " << vs;
  }
}

ModelConfig config(int64_t layers) { return test::sharded_model(layers); }

// The layers per stage a run of model c at sequence length T asks for with --pp-layers spec.
std::vector<int64_t> split_of(const ModelConfig& c, int64_t T, int pp, const std::string& spec) {
  TrainConfig t;
  t.n_layer = c.n_layer;
  t.n_head = c.n_head;
  t.n_embd = c.n_embd;
  t.vocab_size = c.vocab_size;
  t.max_seq_len = c.max_seq_len;
  t.seq_len = T;
  t.pp = pp;
  t.pp_layers = spec;
  return t.pp_split();
}

// m micro-batches of (B, T) random tokens and targets, and pointers to them for the executor.
struct MicroBatches {
  std::vector<std::vector<int32_t>> x, y;
  std::vector<const int32_t*> xp, yp;
  MicroBatches(int64_t m, int64_t n, int64_t V, uint64_t seed) {
    for (int64_t i = 0; i < m; i++) {
      x.push_back(test::random_tokens(n, V, seed + uint64_t(i)));
      y.push_back(test::random_tokens(n, V, seed + 1000 + uint64_t(i)));
    }
    for (int64_t i = 0; i < m; i++) {
      xp.push_back(x[size_t(i)].data());
      yp.push_back(y[size_t(i)].data());
    }
  }
  int m() const { return int(x.size()); }
};

// The whole model accumulating the micro-batches (each scaled 1/m): the sum of their losses.
double accumulate(Model& whole, const MicroBatches& mb, int64_t B, int64_t T) {
  double loss = 0;
  whole.zero_grad();
  for (int i = 0; i < mb.m(); i++) {
    loss += whole.forward(mb.xp[size_t(i)], mb.yp[size_t(i)], B, T, 1.0f / float(mb.m()));
    whole.backward();
  }
  return loss;
}

// ||stage's gradient of e - the whole model's (through the sharding plan)|| / ||whole's||.
double relative_grad_error(const Model& stage, const ParamEntry& e, const Model& whole) {
  const float* g = whole.grads().as<float>() + whole.table().at(e.name).offset;
  double num = 0, den = 0;
  for (int64_t i = 0; i < e.numel(); i++) {
    const double a = stage.grads().as<float>()[e.offset + i], b = g[e.global_index(i)];
    num += (a - b) * (a - b);
    den += b * b;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

TEST(PipelineSchedule, EveryMicroBatchOnceSendsMatchReceivesNoDeadlock) {
  for (PipelineSchedule s : {PipelineSchedule::gpipe, PipelineSchedule::one_f_one_b})
    for (int pp = 1; pp <= 5; pp++)
      for (int m = 1; m <= 9; m++) {
        const std::string what = std::string(pipeline_schedule_name(s)) + " pp " + std::to_string(pp) +
                                 " m " + std::to_string(m);
        check_actions(s, pp, m, 1, what);
        for (int st = 0; st < pp; st++) {
          const int inflight = max_in_flight(pipeline_actions(s, st, pp, m));
          if (s == PipelineSchedule::one_f_one_b) EXPECT_LE(inflight, pp - st) << what;
          else EXPECT_EQ(inflight, m) << what;
        }
        double makespan = 0;
        ASSERT_NO_THROW(simulate(s, pp, m, 1, &makespan)) << what;
        // Unit-time forwards and backwards: each stage is busy 2m of the 2 (m + pp - 1) units.
        EXPECT_DOUBLE_EQ(makespan, 2.0 * (m + pp - 1)) << what;
        EXPECT_NEAR(1.0 - 2.0 * m / makespan, predicted_bubble(pp, m), 1e-12) << what;
      }
}

TEST(PipelineSchedule, InterleavedEveryChunkOnceNoDeadlockBubbleShrinks) {
  for (int pp = 2; pp <= 5; pp++)
    for (int v = 2; v <= 4; v++)
      for (int m = pp; m <= 3 * pp; m += pp) {
        const std::string what = "interleaved pp " + std::to_string(pp) + " v " + std::to_string(v) + " m " +
                                 std::to_string(m);
        check_actions(PipelineSchedule::interleaved, pp, m, v, what);
        double makespan = 0;
        ASSERT_NO_THROW(simulate(PipelineSchedule::interleaved, pp, m, v, &makespan)) << what;
        // Chunk-time units: each stage is busy 2 v m of the 2 (v m + pp - 1) units, so the idle
        // share is (pp - 1) / (v m + pp - 1), v times smaller than 1F1B's in stage-time.
        EXPECT_DOUBLE_EQ(makespan, 2.0 * (v * m + pp - 1)) << what;
        EXPECT_NEAR(1.0 - 2.0 * v * m / makespan, predicted_bubble(pp, m, v), 1e-12) << what;
        // The planner's simulation (parallel/pipeline.h) agrees at unit times; a transfer time
        // only lengthens the step.
        PipeTimes t{std::vector<std::vector<double>>(size_t(pp), std::vector<double>(size_t(v), 1.0)),
                    std::vector<std::vector<double>>(size_t(pp), std::vector<double>(size_t(v), 1.0)), 0.0};
        EXPECT_DOUBLE_EQ(simulate_pipeline(PipelineSchedule::interleaved, pp, m, v, t).makespan, makespan) << what;
        t.send = 0.1;
        EXPECT_GT(simulate_pipeline(PipelineSchedule::interleaved, pp, m, v, t).makespan, makespan) << what;
        // Stage 0 holds the most: 2 (pp - 1) + (v - 1) pp + 1 chunk-micro-batches at once.
        EXPECT_EQ(max_in_flight(pipeline_actions(PipelineSchedule::interleaved, 0, pp, m, v)),
                  std::min(m * v, 2 * (pp - 1) + (v - 1) * pp + 1)) << what;
      }
  EXPECT_THROW(pipeline_actions(PipelineSchedule::interleaved, 0, 2, 3, 2), Error);  // m not a multiple of pp
  EXPECT_THROW(pipeline_actions(PipelineSchedule::interleaved, 0, 2, 4, 1), Error);  // one chunk
  EXPECT_THROW(pipeline_actions(PipelineSchedule::one_f_one_b, 0, 2, 4, 2), Error);
}

TEST(PipelineSchedule, InterleavedShape) {
  // pp 2, v 2, m 4, stage 0: 2 (2 - 0 - 1) + (2 - 1) 2 = 4 warm-up chunk-forwards (micro-batches
  // 0, 1 of chunk 0, then of chunk 1), steady pairs whose backwards start at chunk 1, cool-down.
  std::string got;
  for (const auto& a : pipeline_actions(PipelineSchedule::interleaved, 0, 2, 4, 2))
    if (a.kind == PipeAction::forward || a.kind == PipeAction::backward)
      got += (a.kind == PipeAction::forward ? "F" : "B") + std::to_string(a.micro_batch) + "." + std::to_string(a.chunk) + " ";
  EXPECT_EQ(got, "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0 ");
}

TEST(PipelineSchedule, OneFOneBShape) {
  // pp 4, m 6, stage 1: two warm-up forwards, four steady 1F1B pairs, two cool-down backwards.
  std::string got;
  for (const auto& a : pipeline_actions(PipelineSchedule::one_f_one_b, 1, 4, 6))
    if (a.kind == PipeAction::forward || a.kind == PipeAction::backward)
      got += (a.kind == PipeAction::forward ? "F" : "B") + std::to_string(a.micro_batch) + " ";
  EXPECT_EQ(got, "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5 ");
  EXPECT_THROW(pipeline_actions(PipelineSchedule::gpipe, 2, 2, 4), Error);
  EXPECT_THROW(pipeline_schedule_from_name("zigzag"), Error);
}

TEST(PipelineSplit, EvenExplicitAndErrors) {
  EXPECT_EQ(pipeline_split(8, 4), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(pipeline_split(8, 3, "3,3,2"), (std::vector<int64_t>{3, 3, 2}));
  const StageLayers s = stage_layers(pipeline_split(8, 3, "3,3,2"), 2);
  EXPECT_TRUE(s.chunks.size() == 1 && s.chunks[0].first == 6 && s.chunks[0].n == 2 && !s.first && s.last);
  // Interleaved: 2 ranks x 2 chunks over 6 layers "1,2,2,1": rank 0 holds virtual stages 0 and 2
  // (layers 0 and 3-4), rank 1 stages 1 and 3 (layers 1-2 and 5).
  const std::vector<int64_t> v = pipeline_split(6, 4, "1,2,2,1");
  EXPECT_EQ(stage_layers(v, 0, 2).layers(6), (std::vector<int64_t>{0, 3, 4}));
  EXPECT_EQ(stage_layers(v, 1, 2).layers(6), (std::vector<int64_t>{1, 2, 5}));
  EXPECT_TRUE(stage_layers(v, 0, 2).first && !stage_layers(v, 0, 2).last && stage_layers(v, 1, 2).last);
  EXPECT_EQ(stage_layers(v, 1, 2).chunk_of(5), 1);
  EXPECT_EQ(stage_layers(v, 1, 2).chunk_of(0), -1);
  auto message = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([] { pipeline_split(8, 3); }).find("--pp-layers"), std::string::npos);
  EXPECT_NE(message([] { pipeline_split(8, 3, "3,3,3"); }).find("holds 9 layers but the model has 8"), std::string::npos);
  EXPECT_NE(message([] { pipeline_split(8, 2, "3,3,2"); }).find("names 3 stages but pp is 2"), std::string::npos);
  EXPECT_NE(message([] { pipeline_split(8, 3, "4,0,4"); }).find("'0' is not a positive layer count"), std::string::npos);
  EXPECT_NE(message([] { pipeline_split(8, 2, "4,x"); }).find("'x'"), std::string::npos);
}

TEST(PipelineSplit, BalancedCountsTheHead) {
  ModelConfig gpt2;  // GPT-2 124M at T 256: the head (2 C Vp) costs 5.2 blocks (24 C^2 + 4 T C)
  gpt2.n_layer = 12;
  gpt2.n_head = 12;
  gpt2.n_embd = 768;
  gpt2.max_seq_len = 1024;
  gpt2.vocab_size = 50257;
  EXPECT_EQ(split_of(gpt2, 256, 2, "balanced"), (std::vector<int64_t>{9, 3}));
  EXPECT_EQ(split_of(gpt2, 256, 1, "balanced"), (std::vector<int64_t>{12}));
  EXPECT_EQ(split_of(gpt2, 256, 2, "6,6"), (std::vector<int64_t>{6, 6}));
  // Against every split into contiguous stages of at least one layer: none has a cheaper
  // most-expensive stage.
  const double C = 768, block = 24 * C * C + 4 * 256 * C, head = 2 * C * 50304;
  auto worst = [&](const std::vector<int64_t>& split) {
    double w = 0;
    for (size_t s = 0; s < split.size(); s++) w = std::max(w, double(split[s]) * block + (s + 1 == split.size() ? head : 0));
    return w;
  };
  const auto b4 = split_of(gpt2, 256, 4, "balanced");
  int64_t sum = 0;
  for (int64_t n : b4) sum += n;
  EXPECT_EQ(sum, 12);
  for (int64_t a = 1; a <= 9; a++)
    for (int64_t b = 1; a + b <= 10; b++)
      for (int64_t c = 1; a + b + c <= 11; c++) EXPECT_LE(worst(b4), worst({a, b, c, 12 - a - b - c}) + 1e-3);
  ModelConfig tiny = config(4);  // a head much cheaper than a block: the even split
  tiny.vocab_size = 10;
  tiny.n_embd = 256;
  EXPECT_EQ(split_of(tiny, 16, 2, "balanced"), (std::vector<int64_t>{2, 2}));
  EXPECT_THROW(split_of(tiny, 16, 5, "balanced"), Error);
}

TEST(PipelineParallel, StagesEqualTheWholeModel) {
  const int64_t B = 2, T = 16;
  struct Case {
    int64_t layers;
    int pp;
    std::string split;  // per virtual stage
    PipelineSchedule sched;
    Recompute rc;
    int64_t m = 4;
    int v = 1;
  };
  const PipelineSchedule interleaved = PipelineSchedule::interleaved;
  const std::vector<Case> cases = {
      {4, 2, "", PipelineSchedule::one_f_one_b, Recompute::none},
      {4, 2, "", PipelineSchedule::gpipe, Recompute::none},
      {4, 2, "1,3", PipelineSchedule::one_f_one_b, Recompute::selective},
      {4, 4, "", PipelineSchedule::one_f_one_b, Recompute::full},
      {4, 3, "2,1,1", PipelineSchedule::gpipe, Recompute::full},
      {4, 2, "", interleaved, Recompute::none, 4, 2},               // rank 0: layers 0, 2; rank 1: 1, 3
      {6, 2, "1,2,2,1", interleaved, Recompute::selective, 2, 2},  // uneven chunks, m = pp
      {6, 3, "", interleaved, Recompute::full, 6, 2},
      {6, 2, "", interleaved, Recompute::none, 4, 3},
  };
  for (const Case& k : cases) {
    const ModelConfig c = config(k.layers);
    const int64_t m = k.m;
    const MicroBatches mb(m, B * T, c.vocab_size, 10);
    // The whole model accumulating the m micro-batches, one thread (as each stage runs).
    auto be = make_cpu_backend();
    Model whole(c, *be);
    double loss = 0;
    test::on_local_group(1, [&](Communicator&) {
      whole.init(5);
      loss = accumulate(whole, mb, B, T);
    });
    const std::string what = std::string(pipeline_schedule_name(k.sched)) + " pp " + std::to_string(k.pp) + " v " +
                             std::to_string(k.v) + " split '" + k.split + "' recompute " + recompute_name(k.rc);
    test::on_local_group(k.pp, [&](Communicator& world) {
      Mesh mesh(world, {1, 1, k.pp});
      auto rbe = make_cpu_backend();
      Plan plan = test::model_plan(1, false, k.rc, pipeline_split(c.n_layer, k.pp * k.v, k.split));
      plan.mesh.pp = k.pp;
      plan.pp_schedule = k.sched;
      plan.pp_virtual = k.v;
      Model stage(c, *rbe, DType::fp32, plan, nullptr, mesh.pp_rank());
      if (stage.chunks() != k.v) throw Error(what + ": " + std::to_string(stage.chunks()) + " chunks");
      stage.init(5);
      stage.zero_grad();
      PipelineExecutor exec(stage, mesh.pp(), k.sched, int(m));
      double l = exec.step(mb.xp, mb.yp, B, T, 1.0f / float(m));
      mesh.pp().all_reduce(&l, 1, DType::fp64);  // the last stage's
      if (l != loss) throw Error(what + ": loss " + std::to_string(l) + " vs " + std::to_string(loss));
      for (const ParamEntry& e : stage.table().entries()) {
        if (e.name == "transformer.wte.weight") continue;
        const float* g = whole.grads().as<float>() + whole.table().at(e.name).offset;
        if (std::memcmp(stage.grads().as<float>() + e.offset, g, size_t(e.numel()) * 4) != 0)
          throw Error(what + ": the gradient of " + e.name + " is not bit-identical");
      }
      // The tied weight: the first stage's embedding part plus the last stage's head part.
      if (!stage.stage().first && !stage.stage().last) return;
      const ParamEntry& wte = stage.table().at("transformer.wte.weight");
      mesh.tied().all_reduce(stage.grads().as<float>() + wte.offset, wte.numel(), DType::fp32);
      if (relative_grad_error(stage, wte, whole) > test::fp32_model_bound(c, T)) throw Error(what + ": the tied wte gradient is off");
    });
  }
}

TEST(PipelineParallel, TensorTimesPipelineEqualsTheWholeModel) {
  const ModelConfig c = config(4);
  const int64_t B = 2, T = 16, m = 3;
  const MicroBatches mb(m, B * T, c.vocab_size, 70);
  auto be = make_cpu_backend();
  Model whole(c, *be);
  whole.init(9);
  const double loss = accumulate(whole, mb, B, T), tol = test::fp32_model_bound(c, T);
  for (bool sp : {false, true})
    test::on_local_group(4, [&](Communicator& world) {
      Mesh mesh(world, {1, 2, 2});
      auto rbe = make_cpu_backend();
      Model stage(c, *rbe, DType::fp32, test::model_plan(2, sp, Recompute::selective, pipeline_split(c.n_layer, 2)),
                  &mesh.tp(), mesh.pp_rank());
      stage.init(9);
      stage.zero_grad();
      PipelineExecutor exec(stage, mesh.pp(), PipelineSchedule::one_f_one_b, int(m));
      double l = exec.step(mb.xp, mb.yp, B, T, 1.0f / float(m));
      mesh.pp().all_reduce(&l, 1, DType::fp64);
      if (std::fabs(l - loss) > tol * loss) throw Error("loss " + std::to_string(l) + " vs " + std::to_string(loss));
      const ParamEntry& wte = stage.table().at("transformer.wte.weight");  // both stages are ends
      mesh.tied().all_reduce(stage.grads().as<float>() + wte.offset, wte.numel(), DType::fp32);
      for (const ParamEntry& e : stage.table().entries())
        if (relative_grad_error(stage, e, whole) > tol)
          throw Error(std::string(sp ? "tp2 x pp2 + sp" : "tp2 x pp2") + ": gradient of " + e.name + " off by " +
                      std::to_string(relative_grad_error(stage, e, whole)));
    });
}
