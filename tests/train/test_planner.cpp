// The layout planner (train/planner.h) on a synthetic machine whose every rate is a constant,
// so each prediction has a closed form computed here independently from the layers' FLOP and
// byte counts: the one-rank step is the sum of its records at those rates; tensor parallelism
// adds its collectives, a pipeline its bubble (1F1B at pp 2 with the slower last stage: the first
// stage's forward and backward, plus every boundary transfer on the critical path), ZeRO-3
// its gathers; recompute reruns forward work; the search keeps only valid layouts and ranks
// them; --layout auto takes the first that fits. And the profile's interpolation and file, and a
// cluster's datasheet model: GEMMs on the roofline, collectives by where their ranks sit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "model/model.h"
#include "train/cluster.h"
#include "train/planner.h"

using namespace meshlm;

namespace {

// Every matmul at 100 GFLOP/s, attention at 25, memory 10 GB/s, AdamW 1 ns, cross-entropy as
// memory; every collective moves 1 GB/s per rank at 2 ranks, without latency.
MachineProfile constant_machine() {
  MachineProfile m;
  for (const char* key : {"fp32 forward in_out", "fp32 backward in_out", "fp32 forward out_in", "fp32 backward out_in"})
    m.matmul[key] = {{64, 64, 64, 100}, {4096, 4096, 4096, 100}};
  m.attention["fp32"] = {{64, 64, 25}, {1024, 128, 25}};
  m.memory_gbs = 10;
  m.adamw_ns = 1;
  for (const char* c : {"all_reduce", "reduce_scatter", "all_gather", "send_recv"}) m.collectives[c][2] = {0, 1e9};
  return m;
}

TrainConfig small_config() {
  TrainConfig c;
  c.n_layer = 4, c.n_head = 4, c.n_embd = 64, c.vocab_size = 512, c.max_seq_len = 64;
  c.seq_len = 64, c.batch_size = 8;
  return c;
}

// The closed form of one stage's micro-batch at the constant rates.
double records_seconds(const TrainConfig& c, int stage) {
  double s = 0;
  for (const UnitCost& u : unit_costs(c.model(), c.plan(), stage, DType::fp32, c.micro_batch(), c.seq_len))
    for (const Cost& r : u.ops) {
      if (r.kind == Cost::Kind::gemm) s += r.flops() / ((r.what.rfind("attention", 0) == 0 ? 25 : 100) * 1e9);
      if (r.kind == Cost::Kind::memory) s += double(r.bytes) / 10e9;
      if (r.kind == Cost::Kind::collective) s += double(r.bytes) / 1e9;  // at the measured group size's rate
    }
  return s;
}

TEST(Planner, OneRankIsTheSumOfTheRecordsPlusTheOptimizer) {
  TrainConfig c = small_config();
  c.micro_batch_size = 4;
  const Prediction p = predict_step(c, constant_machine());
  const double P = double(c.model().num_parameters());
  const double compute = 2 * records_seconds(c, 0);  // 2 micro-batches
  EXPECT_NEAR(p.compute_s, compute, 1e-9 + 1e-6 * compute);
  EXPECT_EQ(p.dp_s, 0);
  EXPECT_GT(p.optimizer_s, P * 1e-9);  // AdamW at 1 ns per element, plus the refresh passes
  EXPECT_NEAR(p.step_s, p.compute_s + p.optimizer_s, 1e-12);
}

TEST(Planner, RecomputeRerunsForwardWork) {
  TrainConfig c = small_config();
  const double none = predict_step(c, constant_machine()).compute_s;
  c.recompute = "selective";
  const double selective = predict_step(c, constant_machine()).compute_s;
  c.recompute = "full";
  const double full = predict_step(c, constant_machine()).compute_s;
  EXPECT_LT(none, selective);
  EXPECT_LT(selective, full);
  EXPECT_LT(full, 2 * none);  // only the blocks' forward reruns, not backward
}

TEST(Planner, PipelineSlotsAndDataParallelTraffic) {
  const MachineProfile m = constant_machine();
  TrainConfig c = small_config();
  c.pp = 2, c.micro_batch_size = 2;  // 4 micro-batches
  const Prediction p = predict_step(c, m);
  const double slowest = std::max(records_seconds(c, 0), records_seconds(c, 1));
  EXPECT_NEAR(p.compute_s, 4 * slowest, 1e-6 * slowest + 1e-12);
  // Stage 1 (the LM head) is the slower: it starts after stage 0's first forward and a transfer,
  // then runs m (forward, backward, gradient send); stage 0 ends with the last backward:
  // makespan = stage 0 + transfer + m (stage 1 + transfer), so beyond m x stage 1 the pipeline
  // adds stage 0's forward and backward and m + 1 transfers of the (2, 64, 64) fp32 boundary.
  ASSERT_GT(records_seconds(c, 1), records_seconds(c, 0));
  const double send = 2.0 * 64 * 64 * 4 / 1e9;
  EXPECT_NEAR(p.pp_s, records_seconds(c, 0) + 5 * send, 1e-6 * slowest);
  EXPECT_NEAR(p.bubble, 1.0 / 5.0, 1e-12);
  // Interleaved over 2 chunks per rank: a smaller bubble, more transfers.
  c.n_layer = 4, c.pp_schedule = "interleaved";
  const Prediction q = predict_step(c, m);
  EXPECT_NEAR(q.compute_s, p.compute_s, 1e-9);
  EXPECT_NEAR(q.bubble, 1.0 / 9.0, 1e-12);
  TrainConfig d = small_config();
  d.dp = 2;
  const double P = double(param_table(d.model(), d.plan(), 0, 0).total());
  EXPECT_NEAR(predict_step(d, m).dp_s, P * 4 / 1e9, 1e-12);  // the fp32 gradient's all-reduce
  d.zero = 3;
  EXPECT_GT(predict_step(d, m).dp_s, predict_step(small_config(), m).dp_s);
}

TEST(Planner, SearchKeepsValidLayoutsRankedAndAutoTakesTheFirst) {
  TrainConfig c = small_config();
  c.n_head = 3;  // tp 2 cannot split 3 heads
  c.n_embd = 48;
  const std::vector<Prediction> ps = plan_layouts(c, 2, constant_machine(), 0);
  ASSERT_FALSE(ps.empty());
  for (const Prediction& p : ps) EXPECT_EQ(p.cfg.tp, 1) << p.layout();
  for (size_t i = 1; i < ps.size(); i++) EXPECT_LE(ps[i - 1].step_s, ps[i].step_s);
  const std::vector<Prediction> tight = plan_layouts(c, 2, constant_machine(), ps.back().memory_bytes * 0.999);
  EXPECT_FALSE(tight.back().fits);  // over the limit: kept, marked, ranked last
  TrainConfig chosen = c;
  chosen.layout = "auto";
  const Prediction p = choose_layout(chosen, 2, constant_machine(), 0);
  EXPECT_EQ(chosen.dp * chosen.tp * chosen.pp, 2);
  EXPECT_EQ(p.layout(), ps[0].layout());
  EXPECT_TRUE(chosen.layout.empty());
  EXPECT_THROW(choose_layout(chosen, 2, constant_machine(), 1.0), Error);  // nothing fits in 1 byte
}

TEST(Planner, ProfileInterpolatesAndRoundTrips) {
  MachineProfile m = constant_machine();
  m.matmul["fp32 forward in_out"] = {{64, 64, 64, 10}, {4096, 64, 64, 40}};
  EXPECT_NEAR(m.matmul_gflops(DType::fp32, false, false, 64, 64, 64), 10, 1e-9);  // a grid point is itself
  EXPECT_NEAR(m.matmul_gflops(DType::fp32, false, false, 512, 64, 64), 20, 1e-6);  // geometric midpoint in log space
  EXPECT_NEAR(m.matmul_gflops(DType::fp32, false, false, 1e6, 64, 64), 40, 1e-9);  // clamped beyond the grid
  m.ranks = 2;
  m.cpu = "test CPU";
  const std::string path = (std::filesystem::temp_directory_path() / "meshlm_test_machine.json").string();
  std::filesystem::remove(path);
  save_machine_profile(path, m);
  const MachineProfile back = load_machine_profile(path, 2);
  EXPECT_EQ(back.cpu, "test CPU");
  EXPECT_EQ(back.matmul.at("fp32 forward in_out").size(), 2u);
  EXPECT_NEAR(back.collective_seconds("all_reduce", 2, 1e9), 1.0, 1e-9);
  EXPECT_NEAR(back.collective_seconds("all_reduce", 4, 1e9), 1.5, 1e-9);  // a ring's (g-1)/g from 2 to 4 ranks
  EXPECT_THROW(load_machine_profile(path, 4), Error);  // no profile for 4 ranks: says how to calibrate
  std::filesystem::remove(path);
}

TEST(Planner, ClusterRooflineAndTopology) {
  const ClusterSpec a100 = load_cluster("a100-80gb");
  EXPECT_EQ(a100.devices_per_node, 8);
  EXPECT_DOUBLE_EQ(a100.peak_tflops.at("bf16"), 312);
  const MachineProfile m = cluster_profile(a100, 64);
  // A large product runs at 80% of the bf16 peak; a skinny one (one row) at its bytes' bandwidth.
  EXPECT_NEAR(m.matmul_gflops(DType::bf16, false, false, 4096, 4096, 4096), 0.8 * 312e3, 1e-6);
  const double flops = 2.0 * 1 * 4096 * 4096, bytes = 2.0 * (4096 + 4096 * 4096 + 4096);
  EXPECT_NEAR(m.matmul_gflops(DType::bf16, false, false, 1, 4096, 4096), flops / (bytes / 1750e9) / 1e9, 1e-6);
  // 1000 output columns use 1000/1024 of their eight tiles.
  EXPECT_NEAR(m.matmul_gflops(DType::bf16, false, false, 8192, 4096, 1000), 0.8 * 312e3 * 1000 / 1024, 1e-6);
  // In a node: the fabric's 230 GB/s bus bandwidth, a ring's 2 (g-1)/g of the data per rank.
  EXPECT_NEAR(m.collective_seconds("all_reduce", 8, 1e9, 1), 10e-6 + 1e9 * 2 * 7 / 8 / 230e9, 1e-12);
  // Across 4 nodes, one rank in each (a dp group of tp 8): one NIC's 23 GB/s, log2(4) x 2 steps.
  EXPECT_NEAR(m.collective_seconds("all_reduce", 4, 1e9, 8), 4 * 8e-6 + 1e9 * 2 * 3 / 4 / 23e9, 1e-12);
  // Across 4 nodes with 8 ranks in each (dp 32 of tp 1): eight NICs at once.
  EXPECT_NEAR(m.collective_seconds("all_reduce", 32, 1e9, 1), 10 * 8e-6 + 1e9 * 2 * 31 / 32 / (8 * 23e9), 1e-12);
  EXPECT_NEAR(m.collective_seconds("send_recv", 2, 1e9, 8), 8e-6 + 1e9 / 23e9, 1e-12);  // the next node's stage
  EXPECT_NEAR(m.device_memory_bytes, 76.0 * (1 << 30), 1);
  EXPECT_TRUE(is_cluster("a100-80gb") && is_cluster("my.toml") && !is_cluster("meshlm_machine.json"));
  EXPECT_THROW(load_cluster("b200"), Error);
  try {
    parse_cluster("devices_per_node = 8\n[device]\npeak_tflops = { bf16 = 100 }\n", "test.toml");
    ADD_FAILURE() << "a cluster without gemm_efficiency";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device.gemm_efficiency"), std::string::npos) << e.what();
  }
}

TEST(Planner, PredictsTheKorthikantiRunsWithinTenPercent) {
  // Korthikanti et al. 2022, 175B (GPT-3 shape) on 64 A100s, t 8 x p 8, sequence parallel +
  // selective recompute, batch 64: 13.75 s per iteration (51.4% MFU). The preset was fixed from
  // datasheets and published GEMM / NCCL rates, not from this run (bench/plan_papers.sh has all
  // rows and BENCHMARKS.md the table).
  TrainConfig c;
  c.n_layer = 96, c.n_head = 96, c.n_embd = 12288, c.vocab_size = 51200, c.max_seq_len = 2048;
  c.seq_len = 2048, c.batch_size = 64, c.precision = "bf16", c.grad_reduce = "bf16";
  c.tp = 8, c.pp = 8, c.micro_batch_size = 1, c.recompute = "selective", c.sequence_parallel = 1;
  c.validate();
  const Prediction p = predict_step(c, cluster_profile(load_cluster("a100-80gb"), 64));
  EXPECT_NEAR(p.step_s, 13.75, 0.1 * 13.75);
  EXPECT_LT(p.memory_bytes, 76.0 * (1 << 30));
}

}  // namespace
