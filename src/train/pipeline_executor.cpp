#include "train/pipeline_executor.h"

#include <chrono>

#include "core/error.h"
#include "parallel/tags.h"

namespace meshlm {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
constexpr int kEvalTag = tags::kPipelineEval;
}  // namespace

PipelineExecutor::PipelineExecutor(Model& model, Communicator& pp, PipelineSchedule schedule, int m)
    : model_(model),
      pp_(pp),
      m_(m),
      actions_(pipeline_actions(schedule, pp.rank(), pp.size(), m, model.chunks())),
      v_(model.chunks()) {
  MESHLM_CHECK(tags::pipeline_grad(m - 1, v_ - 1, m) < tags::kPipelineEnd,
               "pipeline: at most " + std::to_string(tags::kPipelineEnd / 2) + " micro-batches x chunks per step");
  int slots = 1;  // a chunk's backwards run in micro-batch order: its slot i % slots is free again
  for (int c = 0; c < v_; c++) slots = std::max(slots, max_in_flight(actions_, c));
  model_.set_slots(slots);
}

double PipelineExecutor::step(const std::vector<const int32_t*>& tokens, const std::vector<const int32_t*>& targets,
                              int64_t B, int64_t T, float dloss_scale, UnitHooks* last_hooks) {
  MESHLM_CHECK(int(tokens.size()) == m_ && int(targets.size()) == m_, "pipeline step: one batch per micro-batch");
  const auto t0 = Clock::now();
  const int s = pp_.rank(), pp = pp_.size(), slots = model_.slots();
  const int prev = (s + pp - 1) % pp, next = (s + 1) % pp;  // around the ring of virtual stages
  const int last_virtual = pp * v_ - 1;
  auto virtual_stage = [&](int c) { return c * pp + s; };
  const DType dt = model_.dtype();
  const int64_t E = model_.boundary_elems(B, T);
  const size_t bytes = size_t(E) * dtype_size(dt);
  if (buffer_bytes_ != bytes) {  // in the model's backend: the communicator moves them, the backend copies
    for (auto* v : {&act_in_, &act_out_, &grad_in_, &grad_out_}) {
      v->clear();
      for (int i = 0; i < m_ * v_; i++) v->emplace_back(bytes, model_.backend());
    }
    buffer_bytes_ = bytes;
  }
  Backend& be = model_.backend();
  // Every receive of the step, posted now; [c m + i] is chunk c's micro-batch i.
  std::vector<RequestPtr> act_recv(size_t(m_ * v_)), grad_recv(size_t(m_ * v_)), sends;
  for (int c = 0; c < v_; c++)
    for (int i = 0; i < m_; i++) {
      const size_t k = size_t(c * m_ + i);
      if (virtual_stage(c) > 0)
        act_recv[k] = pp_.irecv(act_in_[k].data(), E, dt, prev, tags::pipeline_activation(i, c, m_));
      if (virtual_stage(c) < last_virtual)
        grad_recv[k] = pp_.irecv(grad_in_[k].data(), E, dt, next, tags::pipeline_grad(i, c, m_));
    }
  double loss = 0, busy = 0;
  for (const PipeAction& a : actions_) {
    const int i = a.micro_batch, c = a.chunk;
    const size_t k = size_t(c * m_ + i);
    const int slot = i % slots;
    switch (a.kind) {
      case PipeAction::recv_activation: act_recv[k]->wait(); break;
      case PipeAction::recv_grad: grad_recv[k]->wait(); break;
      case PipeAction::forward: {
        const auto f0 = Clock::now();
        loss += model_.forward_micro(c, slot, tokens[size_t(i)], virtual_stage(c) > 0 ? act_in_[k].data() : nullptr,
                                     targets[size_t(i)], B, T, dloss_scale);
        busy += since(f0);
        break;
      }
      case PipeAction::send_activation:  // to the next virtual stage: the next rank's chunk (or the first's next)
        be.copy(act_out_[k].data(), model_.output(c, slot), bytes);
        sends.push_back(pp_.isend(act_out_[k].data(), E, dt, next, tags::pipeline_activation(i, s == pp - 1 ? c + 1 : c, m_)));
        break;
      case PipeAction::backward: {
        const auto b0 = Clock::now();
        model_.set_hooks(i == m_ - 1 ? last_hooks : nullptr);
        model_.backward_micro(c, slot, virtual_stage(c) < last_virtual ? grad_in_[k].data() : nullptr);
        model_.set_hooks(nullptr);
        busy += since(b0);
        break;
      }
      case PipeAction::send_grad:
        be.copy(grad_out_[k].data(), model_.input_grad(), bytes);
        sends.push_back(pp_.isend(grad_out_[k].data(), E, dt, prev, tags::pipeline_grad(i, s == 0 ? c - 1 : c, m_)));
        break;
    }
  }
  for (auto& r : sends) r->wait();
  times_ = {busy, since(t0)};
  return s == pp - 1 ? loss : 0.0;
}

double PipelineExecutor::forward_only(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T) {
  const int s = pp_.rank(), pp = pp_.size();
  const DType dt = model_.dtype();
  const int64_t E = model_.boundary_elems(B, T);
  if (eval_buf_.bytes() != size_t(E) * dtype_size(dt)) eval_buf_ = Buffer(size_t(E) * dtype_size(dt), model_.backend());
  double loss = 0;
  for (int c = 0; c < v_; c++) {  // virtual stage c pp + s, after c pp + s - 1 (on the previous rank)
    const bool first = c == 0 && s == 0, last = c == v_ - 1 && s == pp - 1;
    if (!first) pp_.recv(eval_buf_.data(), E, dt, (s + pp - 1) % pp, kEvalTag);
    loss = model_.forward_micro(c, 0, tokens, first ? nullptr : eval_buf_.data(), targets, B, T, 0.0f);
    if (!last) pp_.send(model_.output(c, 0), E, dt, (s + 1) % pp, kEvalTag);
  }
  return s == pp - 1 ? loss : 0.0;
}

}  // namespace meshlm
