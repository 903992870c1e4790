// The communicator as a declared client of a backend's memory (communicator.h,
// as_backend_client): every call, and every wait or test of a request it started, runs with
// the backend's memory open (Backend::begin_client_access), because MPI reads and writes tensor
// buffers inside its calls, also for collectives started earlier.
#include <cstdlib>

#include "backend/backend.h"
#include "core/error.h"
#include "parallel/communicator.h"

namespace meshlm {
namespace {

class ClientRequest final : public Request {
 public:
  ClientRequest(RequestPtr inner, Backend& be) : in_(std::move(inner)), be_(be) {}
  void wait() override {
    ClientAccess open(&be_);
    in_->wait();
  }
  bool test() override {
    ClientAccess open(&be_);
    return in_->test();
  }

 private:
  RequestPtr in_;
  Backend& be_;
};

class ClientCommunicator final : public Communicator {
 public:
  ClientCommunicator(Communicator& inner, std::unique_ptr<Communicator> owned, Backend& be)
      : in_(inner), owned_(std::move(owned)), be_(be) {}
  int rank() const override { return in_.rank(); }
  int size() const override { return in_.size(); }
  const char* kind() const override { return in_.kind(); }
  std::string library_version() const override { return in_.library_version(); }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    ClientAccess open(&be_);
    in_.all_reduce(buf, n, dt, op);
  }
  RequestPtr iall_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    ClientAccess open(&be_);
    return std::make_unique<ClientRequest>(in_.iall_reduce(buf, n, dt, op), be_);
  }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    ClientAccess open(&be_);
    in_.reduce_scatter(send, recv, counts, dt);
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    ClientAccess open(&be_);
    in_.all_gather(send, recv, counts, dt);
  }
  RequestPtr ireduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    ClientAccess open(&be_);
    return std::make_unique<ClientRequest>(in_.ireduce_scatter(send, recv, counts, dt), be_);
  }
  RequestPtr iall_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    ClientAccess open(&be_);
    return std::make_unique<ClientRequest>(in_.iall_gather(send, recv, counts, dt), be_);
  }
  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    ClientAccess open(&be_);
    in_.broadcast(buf, n, dt, root);
  }
  void send(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    ClientAccess open(&be_);
    in_.send(buf, n, dt, dest, tag);
  }
  void recv(void* buf, int64_t n, DType dt, int src, int tag) override {
    ClientAccess open(&be_);
    in_.recv(buf, n, dt, src, tag);
  }
  RequestPtr isend(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    ClientAccess open(&be_);
    return std::make_unique<ClientRequest>(in_.isend(buf, n, dt, dest, tag), be_);
  }
  RequestPtr irecv(void* buf, int64_t n, DType dt, int src, int tag) override {
    ClientAccess open(&be_);
    return std::make_unique<ClientRequest>(in_.irecv(buf, n, dt, src, tag), be_);
  }
  void barrier() override {
    ClientAccess open(&be_);
    in_.barrier();
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    auto part = in_.split(color, key);
    Communicator& ref = *part;
    return std::make_unique<ClientCommunicator>(ref, std::move(part), be_);
  }
  [[noreturn]] void abort(int code) override {
    in_.abort(code);
    std::_Exit(code);  // (the inner abort does not return; the compiler cannot see through it)
  }

 private:
  Communicator& in_;
  std::unique_ptr<Communicator> owned_;  // set when this view owns the communicator it wraps
  Backend& be_;
};

}  // namespace

// NCCL over `inner` (libmeshlm_cuda.so's), or a one-line error.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& inner, Backend& be) {
  using Make = Communicator* (*)(Communicator*, Backend*, char*, int);
  auto make = reinterpret_cast<Make>(cuda_library_symbol("meshlm_cuda_make_nccl"));
  MESHLM_CHECK(make, "--comm nccl: the CUDA library has no NCCL communicator (built without NCCL?)");
  char err[512] = {};
  Communicator* c = make(&inner, &be, err, sizeof err);
  MESHLM_CHECK(c, std::string("--comm nccl: ") + err);
  return std::unique_ptr<Communicator>(c);
}

std::unique_ptr<Communicator> as_backend_client(Communicator& inner, Backend& be, bool nccl) {
  if (!be.host_addressable()) {  // device memory: MPI through host copies, or NCCL between the devices
    if (nccl && inner.size() > 1) return make_nccl_communicator(inner, be);
    return as_staged_client(inner, be);
  }
  return std::make_unique<ClientCommunicator>(inner, nullptr, be);
}

}  // namespace meshlm
