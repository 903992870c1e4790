// The trainer's parts on their own, on threads as ranks: the data-parallel strategies
// (GradSync) reduce exactly what a sum over the ranks gives and hand back equal weights; the
// Checkpointer saves a tensor-parallel and pipelined model into the very files the whole model
// writes (byte for byte: the shards are slices by global index), and load_checkpoint gives
// every layout its slices back.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "parallel/mesh.h"
#include "support/fixtures.h"
#include "support/local_group.h"
#include "train/checkpointer.h"
#include "train/grad_sync.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

Plan dp_plan(GradSyncKind kind) {
  Plan p;
  p.mesh.dp = 2;
  p.grad_sync = kind;
  p.bucket_mb = 0.004;  // 1000 floats: several buckets
  return p;
}

// Rank r's gradient element i: r + i % 7 (exact in fp32), so the sum over two ranks is 1 + 2 (i % 7).
void fill_grads(Model& m, int rank) {
  std::vector<float> g(size_t(m.grads().numel()));
  for (size_t i = 0; i < g.size(); i++) g[i] = float(rank) + float(i % 7);
  m.backend().upload(m.grads().data(), g.data(), g.size() * 4);
}

TEST(GradSync, BucketsAndZero1SumOverTheRanks) {
  const ModelConfig c = test::sharded_model(2);
  for (GradSyncKind kind : {GradSyncKind::buckets, GradSyncKind::zero1})
    test::on_local_group(2, [&](Communicator& world) {
      Mesh mesh(world, {2, 1, 1});
      auto be = make_cpu_backend();
      const Plan plan = dp_plan(kind);
      Model m(c, *be, DType::fp32, plan);
      m.init(1);
      auto sync = GradSync::make(plan, mesh, m, 0);
      fill_grads(m, mesh.dp_rank());
      float* g = m.grads().as<float>();
      sync->begin_step(g);
      if (sync->overlapped())  // as backward would report, from the end
        for (int64_t off : {m.table().total() / 2, int64_t(0)}) sync->grads_final_from(off);
      sync->finish(g);
      const Zero1Shard s = sync->shard();
      if (kind == GradSyncKind::zero1 && s.size() >= m.table().total()) throw Error("ZeRO-1 holds a shard");
      for (int64_t i = s.begin; i < s.end; i++)
        if (g[i] != 1.0f + 2.0f * float(i % 7)) throw Error("element " + std::to_string(i) + " is not the sum");
      // Each rank changes only its shard of the masters; afterwards all agree everywhere.
      float* p = m.params().as<float>();
      for (int64_t i = s.begin; i < s.end; i++) p[i] = float(i);
      sync->refresh_weights(m, {});
      for (int64_t i = 0; i < m.table().total(); i++)
        if (kind == GradSyncKind::zero1 && p[i] != float(i)) throw Error("ZeRO-1: the weights are not whole again");
      if ((sync->norm_op() == ReduceOp::sum) != (kind == GradSyncKind::zero1)) throw Error("norm reduction");
    });
}

TEST(Checkpointer, ShardedAndPipelinedStatesSaveTheWholeModelsFiles) {
  const ModelConfig c = test::sharded_model(2);
  const fs::path root = test::fresh_dir("checkpointer");
  const TrainerState st{3, {96}, 0, {0, 0}, {}, {}};
  auto be = make_cpu_backend();
  Model whole(c, *be);
  whole.init(5);
  AdamW wopt(*be, whole.table(), DType::fp32, {});
  save_checkpoint((root / "whole").string(), whole, &wopt, st, {{"n_layer", 2}});
  for (const MeshShape shape : {MeshShape{1, 2, 1}, MeshShape{1, 1, 2}, MeshShape{2, 2, 2}})
    test::on_local_group(shape.size(), [&](Communicator& world) {
      Mesh mesh(world, shape);
      auto rbe = make_cpu_backend();
      Plan plan = test::model_plan(shape.tp, false, Recompute::none,
                                   shape.pp > 1 ? std::vector<int64_t>{1, 1} : std::vector<int64_t>{});
      plan.mesh.dp = shape.dp;
      plan.grad_sync = shape.dp > 1 ? GradSyncKind::zero1 : GradSyncKind::none;
      Model m(c, *rbe, DType::fp32, plan, &mesh.tp(), mesh.pp_rank());
      m.init(5);
      auto sync = GradSync::make(plan, mesh, m, 0);
      AdamW opt(*rbe, m.table(), DType::fp32, {}, sync->shard().begin, sync->shard().end);
      const std::string dir = (root / shape.describe()).string();
      Checkpointer(mesh, m, opt).save(dir, st, {{"n_layer", 2}}, "");
      world.barrier();
      for (const char* f : {"model.safetensors", "optimizer.safetensors"})
        if (test::slurp(fs::path(dir) / f) != test::slurp(root / "whole" / f))
          throw Error(shape.describe() + ": " + f + " differs from the whole model's");
      // Loading gives this rank its slices back.
      Model back(c, *rbe, DType::fp32, plan, &mesh.tp(), mesh.pp_rank());
      load_checkpoint(dir, back, nullptr);
      auto bytes = [](const Tensor& t) { return std::string(static_cast<const char*>(t.data()), t.nbytes()); };
      if (bytes(back.params()) != bytes(m.params())) throw Error("loaded slices differ");
    });
}

}  // namespace
