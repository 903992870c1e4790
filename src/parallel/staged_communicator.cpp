// A communicator over buffers the host cannot address (the cuda backend's device memory), for
// an inner communicator that needs host memory (MPI without CUDA awareness): every call copies
// its inputs out through the backend (download), runs the inner call on host copies, and copies
// the results back in (upload). Non-blocking calls stage their inputs when started and their
// results when waited on; the host copies live in the request. Slower than NCCL but exact, and
// any layout runs unchanged: the path multi-rank GPU layouts take through MPI (docs/cuda.md).
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "parallel/communicator.h"

namespace meshlm {
namespace {

int64_t total(const std::vector<int64_t>& counts) {
  int64_t t = 0;
  for (int64_t c : counts) t += c;
  return t;
}

// Host copies of one call's buffers.
struct Staging {
  Backend& be;
  std::vector<unsigned char> host;
  void* out(const void* buf, int64_t n, DType dt) {  // a host copy of buf's n elements
    host.resize(size_t(n) * dtype_size(dt));
    be.download(host.data(), buf, host.size());
    return host.data();
  }
  void* space(int64_t n, DType dt) {
    host.resize(size_t(n) * dtype_size(dt));
    return host.data();
  }
  void in(void* buf) { be.upload(buf, host.data(), host.size()); }  // results back
};

class StagedRequest final : public Request {
 public:
  // `result` (may be null: a send) receives the staged buffer when the inner request completes.
  StagedRequest(Backend& be, void* result) : stage{be, {}}, second{be, {}}, result_(result) {}
  void start(RequestPtr inner) { in_ = std::move(inner); }
  void wait() override {
    in_->wait();
    finish();
  }
  bool test() override {
    if (!in_->test()) return false;
    finish();
    return true;
  }
  Staging stage, second;  // the result's host buffer, and (reduce-scatter, all-gather) the input's

 private:
  void finish() {
    if (result_) stage.in(result_);
    result_ = nullptr;
  }
  RequestPtr in_;
  void* result_;
};

class StagedCommunicator final : public Communicator {
 public:
  StagedCommunicator(Communicator& inner, std::unique_ptr<Communicator> owned, Backend& be)
      : in_(inner), owned_(std::move(owned)), be_(be) {}
  int rank() const override { return in_.rank(); }
  int size() const override { return in_.size(); }
  const char* kind() const override { return in_.kind(); }
  std::string library_version() const override { return in_.library_version() + ", staged through host memory"; }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    Staging s{be_, {}};
    in_.all_reduce(s.out(buf, n, dt), n, dt, op);
    s.in(buf);
  }
  RequestPtr iall_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    auto r = std::make_unique<StagedRequest>(be_, buf);
    r->start(in_.iall_reduce(r->stage.out(buf, n, dt), n, dt, op));
    return r;
  }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    ireduce_scatter(send, recv, counts, dt)->wait();
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    iall_gather(send, recv, counts, dt)->wait();
  }
  RequestPtr ireduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    auto r = std::make_unique<StagedRequest>(be_, recv);
    const void* hsend = r->second.out(send, total(counts), dt);
    r->start(in_.ireduce_scatter(hsend, r->stage.space(counts.at(size_t(rank())), dt), counts, dt));
    return r;
  }
  RequestPtr iall_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    auto r = std::make_unique<StagedRequest>(be_, recv);
    const void* hsend = r->second.out(send, counts.at(size_t(rank())), dt);
    r->start(in_.iall_gather(hsend, r->stage.space(total(counts), dt), counts, dt));
    return r;
  }
  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    Staging s{be_, {}};
    in_.broadcast(rank() == root ? s.out(buf, n, dt) : s.space(n, dt), n, dt, root);
    if (rank() != root) s.in(buf);
  }
  void send(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    Staging s{be_, {}};
    in_.send(s.out(buf, n, dt), n, dt, dest, tag);
  }
  void recv(void* buf, int64_t n, DType dt, int src, int tag) override {
    Staging s{be_, {}};
    in_.recv(s.space(n, dt), n, dt, src, tag);
    s.in(buf);
  }
  RequestPtr isend(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    auto r = std::make_unique<StagedRequest>(be_, nullptr);
    r->start(in_.isend(r->stage.out(buf, n, dt), n, dt, dest, tag));
    return r;
  }
  RequestPtr irecv(void* buf, int64_t n, DType dt, int src, int tag) override {
    auto r = std::make_unique<StagedRequest>(be_, buf);
    r->start(in_.irecv(r->stage.space(n, dt), n, dt, src, tag));
    return r;
  }
  void barrier() override { in_.barrier(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    auto part = in_.split(color, key);
    Communicator& ref = *part;
    return std::make_unique<StagedCommunicator>(ref, std::move(part), be_);
  }
  [[noreturn]] void abort(int code) override {
    in_.abort(code);
    std::_Exit(code);
  }

 private:
  Communicator& in_;
  std::unique_ptr<Communicator> owned_;
  Backend& be_;
};

}  // namespace

std::unique_ptr<Communicator> as_staged_client(Communicator& inner, Backend& be) {
  return std::make_unique<StagedCommunicator>(inner, nullptr, be);
}

}  // namespace meshlm
