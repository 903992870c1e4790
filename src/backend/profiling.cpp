#include "backend/profiling.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace meshlm {
namespace {

class Profiler final : public ProfilingBackend {
 public:
  explicit Profiler(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {}
  const char* name() const override { return in_->name(); }
  bool supports(Op op, DType dt) const override { return in_->supports(op, dt); }
  const std::map<std::string, KernelTime>& times() const override { return times_; }
  void reset() override { times_.clear(); }
  void set_enabled(bool on) override { enabled_ = on; }

  void gemm(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
            const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C,
            int64_t ldc) override {
    timed("gemm", [&] { in_->gemm(dt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); });
  }
  void matmul_forward(DType dt, void* out, const void* inp, const void* w, const void* bias,
                      int64_t N, int64_t C, int64_t OC, WeightLayout layout) override {
    timed("matmul.forward", [&] { in_->matmul_forward(dt, out, inp, w, bias, N, C, OC, layout); });
  }
  void matmul_backward(DType dt, void* dinp, void* dw, void* dbias, const void* dout,
                       const void* inp, const void* w, int64_t N, int64_t C, int64_t OC,
                       WeightLayout layout) override {
    timed("matmul.backward",
          [&] { in_->matmul_backward(dt, dinp, dw, dbias, dout, inp, w, N, C, OC, layout); });
  }
  void layernorm_forward(DType dt, void* out, void* mean, void* rstd, const void* inp,
                         const void* w, const void* b, int64_t N, int64_t C) override {
    timed("layernorm.forward", [&] { in_->layernorm_forward(dt, out, mean, rstd, inp, w, b, N, C); });
  }
  void layernorm_backward(DType dt, void* dinp, void* dw, void* db, const void* dout,
                          const void* inp, const void* w, const void* mean, const void* rstd,
                          int64_t N, int64_t C) override {
    timed("layernorm.backward",
          [&] { in_->layernorm_backward(dt, dinp, dw, db, dout, inp, w, mean, rstd, N, C); });
  }
  void attention_forward(DType dt, void* out, void* lse, const void* qkv, int64_t B, int64_t T,
                         int64_t C, int64_t NH) override {
    timed("attention.forward", [&] { in_->attention_forward(dt, out, lse, qkv, B, T, C, NH); });
  }
  void attention_backward(DType dt, void* dqkv, const void* dout, const void* qkv,
                          const void* out, const void* lse, int64_t B, int64_t T, int64_t C,
                          int64_t NH) override {
    timed("attention.backward",
          [&] { in_->attention_backward(dt, dqkv, dout, qkv, out, lse, B, T, C, NH); });
  }
  void gelu_forward(DType dt, void* out, const void* inp, int64_t n) override {
    timed("gelu.forward", [&] { in_->gelu_forward(dt, out, inp, n); });
  }
  void gelu_backward(DType dt, void* dinp, const void* inp, const void* dout, int64_t n) override {
    timed("gelu.backward", [&] { in_->gelu_backward(dt, dinp, inp, dout, n); });
  }
  void residual_forward(DType dt, void* out, const void* a, const void* b, int64_t n) override {
    timed("residual.forward", [&] { in_->residual_forward(dt, out, a, b, n); });
  }
  void embedding_forward(DType dt, void* out, const int32_t* tokens, const void* wte,
                         const void* wpe, int64_t B, int64_t T, int64_t C) override {
    timed("embedding.forward", [&] { in_->embedding_forward(dt, out, tokens, wte, wpe, B, T, C); });
  }
  void embedding_backward(DType dt, void* dwte, void* dwpe, const void* dout,
                          const int32_t* tokens, int64_t B, int64_t T, int64_t C) override {
    timed("embedding.backward",
          [&] { in_->embedding_backward(dt, dwte, dwpe, dout, tokens, B, T, C); });
  }
  void crossentropy_forward_backward(DType dt, void* losses, void* logits, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp) override {
    timed("crossentropy", [&] {
      in_->crossentropy_forward_backward(dt, losses, logits, targets, dloss, N, V, Vp);
    });
  }
  void logsumexp_rows(DType dt, void* lse, const void* logits, int64_t N, int64_t V, int64_t Vp) override {
    timed("crossentropy", [&] { in_->logsumexp_rows(dt, lse, logits, N, V, Vp); });
  }
  void crossentropy_backward_given_lse(DType dt, void* logits, const void* lse, const int32_t* targets,
                                       float dloss, int64_t N, int64_t V, int64_t Vp) override {
    timed("crossentropy", [&] { in_->crossentropy_backward_given_lse(dt, logits, lse, targets, dloss, N, V, Vp); });
  }
  void adamw_update(DType dt, void* p, const void* g, void* m, void* v, int64_t n,
                    const AdamWArgs& a) override {
    timed("adamw", [&] { in_->adamw_update(dt, p, g, m, v, n, a); });
  }
  double sum_squares(DType dt, const void* x, int64_t n) override {
    double r = 0;
    timed("sum_squares", [&] { r = in_->sum_squares(dt, x, n); });
    return r;
  }

 private:
  template <class F>
  void timed(const char* key, F&& f) {
    if (!enabled_) return f();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    KernelTime& k = times_[key];
    k.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    k.calls++;
  }
  std::unique_ptr<Backend> in_;
  std::map<std::string, KernelTime> times_;
  bool enabled_ = true;
};

}  // namespace

std::unique_ptr<ProfilingBackend> make_profiling_backend(std::unique_ptr<Backend> inner) {
  return std::make_unique<Profiler>(std::move(inner));
}

void ProfilingBackend::print(std::ostream& out, double step_seconds, int64_t steps,
                             const std::map<std::string, double>& extra) const {
  std::vector<std::pair<std::string, KernelTime>> rows(times().begin(), times().end());
  for (const auto& [name, secs] : extra) rows.push_back({name, KernelTime{secs, steps}});
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  const double per = steps > 0 ? 1.0 / double(steps) : 1.0;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-20s %12s %8s %10s\n", "kernel", "ms/step", "share", "calls/step");
  out << buf;
  double total = 0;
  for (const auto& [name, t] : rows) {
    total += t.seconds;
    std::snprintf(buf, sizeof buf, "%-20s %12.1f %7.1f%% %10.1f\n", name.c_str(), t.seconds * per * 1e3,
                  100 * t.seconds / step_seconds, double(t.calls) * per);
    out << buf;
  }
  std::snprintf(buf, sizeof buf, "%-20s %12.1f %7.1f%%\n", "(outside kernels)",
                (step_seconds - total) * per * 1e3, 100 * (step_seconds - total) / step_seconds);
  out << buf;
}

}  // namespace meshlm
