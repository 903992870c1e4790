#include "train/checkpointer.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "parallel/data_parallel.h"
#include "parallel/tags.h"

namespace meshlm {

struct Checkpointer::HostState {
  ParamTable table;                 // what the buffers are laid out by
  std::vector<float> p, m, v;       // (P) each
};

namespace {

std::vector<float> download(Backend& be, const void* src, int64_t n) {
  std::vector<float> host(static_cast<size_t>(n));
  be.download(host.data(), src, size_t(n) * 4);
  return host;
}

// The whole stages of the model on one tensor-parallel rank: the tables whole tensors of each
// stage are laid out by.
Plan unsharded_stages(const Plan& plan) {
  Plan p;
  p.mesh.pp = plan.mesh.pp;
  p.pp_split = plan.pp_split;
  p.pp_schedule = plan.pp_schedule;
  p.pp_virtual = plan.pp_virtual;
  return p;
}

}  // namespace

// This tp rank's masters whole: downloaded, or (ZeRO-2/3 store the shard) gathered over dp.
std::vector<float> Checkpointer::masters() {
  Backend& be = model_.backend();
  const int64_t P = model_.table().total();
  if (!model_.residency().shard_masters) return download(be, model_.params().data(), P);
  const std::vector<float> mine = download(be, model_.params().data(), model_.params().numel());
  std::vector<float> all(static_cast<size_t>(P));
  mesh_.dp().all_gather(mine.data(), all.data(), zero1_counts(P, mesh_.shape().dp), DType::fp32);
  return all;
}

Checkpointer::HostState Checkpointer::local_state() {
  Backend& be = model_.backend();
  const int64_t P = model_.table().total();
  HostState s{model_.table(), masters(), {}, {}};
  if (opt_.begin() == 0 && opt_.end() == P) {
    s.m = download(be, opt_.m().data(), P);
    s.v = download(be, opt_.v().data(), P);
    return s;
  }
  // ZeRO-1: all of this tp rank's moments, gathered over dp.
  const std::vector<int64_t> counts = zero1_counts(P, mesh_.shape().dp);
  const std::vector<float> m = download(be, opt_.m().data(), opt_.m().numel()),
                           v = download(be, opt_.v().data(), opt_.v().numel());
  s.m.resize(size_t(P));
  s.v.resize(size_t(P));
  mesh_.dp().all_gather(m.data(), s.m.data(), counts, DType::fp32);
  mesh_.dp().all_gather(v.data(), s.v.data(), counts, DType::fp32);
  return s;
}

Checkpointer::HostState Checkpointer::whole_stage(const HostState& local) {
  Communicator& tp = mesh_.tp();
  HostState w{param_table(model_.config(), unsharded_stages(model_.plan()), mesh_.pp_rank(), 0), {}, {}, {}};
  for (auto* b : {&w.p, &w.m, &w.v}) b->assign(size_t(w.table.total()), 0.0f);
  std::vector<float> buf;
  for (const ParamEntry& e : local.table.entries()) {
    const int64_t base = w.table.at(e.name).offset, n = e.numel();
    const std::pair<const std::vector<float>*, std::vector<float>*> pairs[] = {
        {&local.p, &w.p}, {&local.m, &w.m}, {&local.v, &w.v}};
    for (const auto& [src, dst] : pairs) {
      if (e.shard == Sharding::replicated) {
        std::copy_n(src->begin() + e.offset, n, dst->begin() + base);
        continue;
      }
      buf.resize(size_t(n) * size_t(tp.size()));
      tp.all_gather(src->data() + e.offset, buf.data(), std::vector<int64_t>(size_t(tp.size()), n), DType::fp32);
      for (int r = 0; r < tp.size(); r++) {
        ParamEntry er = e;  // rank r's part of the same parameter
        er.tp_rank = r;
        er.for_each_run([&](int64_t l, int64_t g, int64_t k) {
          std::copy_n(buf.begin() + int64_t(r) * n + l, k, dst->begin() + base + g);
        });
      }
    }
  }
  return w;
}

Checkpointer::HostState Checkpointer::whole_model(const HostState& stage) {
  Communicator& pp = mesh_.pp();
  const std::vector<float>* mine[] = {&stage.p, &stage.m, &stage.v};
  if (pp.rank() != 0) {
    for (const auto* t : mine) pp.send(t->data(), int64_t(t->size()), DType::fp32, 0, tags::kCheckpoint);
    return stage;
  }
  HostState all{param_table(model_.config(), Plan{}, 0, 0), {}, {}, {}};
  for (auto* b : {&all.p, &all.m, &all.v}) b->assign(size_t(all.table.total()), 0.0f);
  std::vector<float>* dst[] = {&all.p, &all.m, &all.v};
  const Plan stages = unsharded_stages(model_.plan());
  for (int s = pp.size() - 1; s >= 0; s--) {  // the first stage last: its wte is the one kept
    const ParamTable table = param_table(model_.config(), stages, s, 0);
    for (int k = 0; k < 3; k++) {
      std::vector<float> buf;
      const float* data = mine[k]->data();
      if (s > 0) {
        buf.resize(size_t(table.total()));
        pp.recv(buf.data(), table.total(), DType::fp32, s, tags::kCheckpoint);
        data = buf.data();
      }
      for (const ParamEntry& e : table.entries())
        std::copy_n(data + e.offset, e.numel(), dst[k]->begin() + all.table.at(e.name).offset);
    }
  }
  return all;
}

void Checkpointer::save(const std::string& dir, const TrainerState& st, const nlohmann::json& config,
                        const std::string& tokenizer_file) {
  const MeshShape& shape = mesh_.shape();
  const bool lead = mesh_.rank() == 0;
  if (shape.tp == 1 && shape.pp == 1) {  // the local table is the whole model's
    const int64_t P = model_.table().total();
    const bool sliced = opt_.begin() != 0 || opt_.end() != P;
    if (!sliced && !lead) return;
    Backend& be = model_.backend();
    const std::vector<float> p = masters(),
                             m = download(be, opt_.m().data(), opt_.m().numel()),
                             v = download(be, opt_.v().data(), opt_.v().numel());
    const CheckpointTensors t{&model_.table(), p.data(), m.data(), v.data(), opt_.begin(), opt_.end()};
    save_checkpoint(dir, t, st, config, tokenizer_file, sliced ? &mesh_.dp() : nullptr);
    return;
  }
  HostState stage = whole_stage(local_state());
  if (mesh_.tp_rank() != 0 || mesh_.dp_rank() != 0) return;  // the pp group of rank 0 goes on
  HostState all = shape.pp > 1 ? whole_model(stage) : std::move(stage);
  if (!lead) return;
  const CheckpointTensors t{&all.table, all.p.data(), all.m.data(), all.v.data(), 0, all.table.total()};
  save_checkpoint(dir, t, st, config, tokenizer_file);
}

}  // namespace meshlm
