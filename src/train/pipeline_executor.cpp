#include "train/pipeline_executor.h"

#include <chrono>

#include "core/error.h"
#include "parallel/tags.h"

namespace meshlm {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
int activation_tag(int i) { return tags::pipeline_activation(i); }
int grad_tag(int i) { return tags::pipeline_grad(i); }
constexpr int kEvalTag = tags::kPipelineEval;
}  // namespace

PipelineExecutor::PipelineExecutor(Model& model, Communicator& pp, PipelineSchedule schedule, int m)
    : model_(model), pp_(pp), m_(m), actions_(pipeline_actions(schedule, pp.rank(), pp.size(), m)) {
  MESHLM_CHECK(grad_tag(m - 1) < tags::kPipelineEnd, "pipeline: at most " + std::to_string(kEvalTag / 2) + " micro-batches per step");
  model_.set_slots(max_in_flight(actions_));
}

double PipelineExecutor::step(const std::vector<const int32_t*>& tokens, const std::vector<const int32_t*>& targets,
                              int64_t B, int64_t T, float dloss_scale, UnitHooks* last_hooks) {
  MESHLM_CHECK(int(tokens.size()) == m_ && int(targets.size()) == m_, "pipeline step: one batch per micro-batch");
  const auto t0 = Clock::now();
  const int s = pp_.rank(), last = pp_.size() - 1, slots = model_.slots();
  const DType dt = model_.dtype();
  const int64_t E = model_.boundary_elems(B, T);
  const size_t bytes = size_t(E) * dtype_size(dt);
  if (buffer_bytes_ != bytes) {  // in the model's backend: the communicator moves them, the backend copies
    for (auto* v : {&act_in_, &act_out_, &grad_in_, &grad_out_}) {
      v->clear();
      for (int i = 0; i < m_; i++) v->emplace_back(bytes, model_.backend());
    }
    buffer_bytes_ = bytes;
  }
  Backend& be = model_.backend();
  // Every receive of the step, posted now.
  std::vector<RequestPtr> act_recv, grad_recv, sends;
  act_recv.resize(size_t(m_));
  grad_recv.resize(size_t(m_));
  for (int i = 0; i < m_; i++) {
    if (s > 0) act_recv[size_t(i)] = pp_.irecv(act_in_[size_t(i)].data(), E, dt, s - 1, activation_tag(i));
    if (s < last) grad_recv[size_t(i)] = pp_.irecv(grad_in_[size_t(i)].data(), E, dt, s + 1, grad_tag(i));
  }
  double loss = 0, busy = 0;
  for (const PipeAction& a : actions_) {
    const size_t i = size_t(a.micro_batch);
    const int slot = a.micro_batch % slots;  // backwards run in order: a slot is free again
    switch (a.kind) {
      case PipeAction::recv_activation: act_recv[i]->wait(); break;
      case PipeAction::recv_grad: grad_recv[i]->wait(); break;
      case PipeAction::forward: {
        const auto f0 = Clock::now();
        loss += model_.forward_micro(slot, tokens[i], s > 0 ? act_in_[i].data() : nullptr, targets[i], B, T,
                                     dloss_scale);
        busy += since(f0);
        break;
      }
      case PipeAction::send_activation:
        be.copy(act_out_[i].data(), model_.output(slot), bytes);
        sends.push_back(pp_.isend(act_out_[i].data(), E, dt, s + 1, activation_tag(a.micro_batch)));
        break;
      case PipeAction::backward: {
        const auto b0 = Clock::now();
        model_.set_hooks(a.micro_batch == m_ - 1 ? last_hooks : nullptr);
        model_.backward_micro(slot, s < last ? grad_in_[i].data() : nullptr);
        model_.set_hooks(nullptr);
        busy += since(b0);
        break;
      }
      case PipeAction::send_grad:
        be.copy(grad_out_[i].data(), model_.input_grad(), bytes);
        sends.push_back(pp_.isend(grad_out_[i].data(), E, dt, s - 1, grad_tag(a.micro_batch)));
        break;
    }
  }
  for (auto& r : sends) r->wait();
  times_ = {busy, since(t0)};
  return s == last ? loss : 0.0;
}

double PipelineExecutor::forward_only(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T) {
  const int s = pp_.rank(), last = pp_.size() - 1;
  const DType dt = model_.dtype();
  const int64_t E = model_.boundary_elems(B, T);
  if (eval_buf_.bytes() != size_t(E) * dtype_size(dt)) eval_buf_ = Buffer(size_t(E) * dtype_size(dt), model_.backend());
  if (s > 0) pp_.recv(eval_buf_.data(), E, dt, s - 1, kEvalTag);
  const double loss = model_.forward_micro(0, tokens, s > 0 ? eval_buf_.data() : nullptr, targets, B, T, 0.0f);
  if (s < last) pp_.send(model_.output(0), E, dt, s + 1, kEvalTag);
  return s == last ? loss : 0.0;
}

}  // namespace meshlm
