// The NCCL communicator (built into libmeshlm_cuda.so; docs/cuda.md): collectives between GPUs
// on device buffers. Bootstrapped over another communicator (MPI): rank 0's unique id is
// broadcast, each rank joins with the device its cuda backend chose. Collectives run on a
// stream of their own, ordered after the backend's queued work by an event and before its
// later work by another, so a blocking call returns with the result ordered for every kernel
// that follows; a non-blocking one's wait() makes that ordering. Uneven reduce-scatter and
// all-gather counts are padded to NCCL's equal blocks (bootstrap.h). Host buffers (scalars such
// as a sum of squares) go through the bootstrap communicator. An error aborts the NCCL
// communicator and then the job.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/bootstrap.h"
#include "core/error.h"
#include "parallel/communicator.h"

extern "C" cudaStream_t meshlm_cuda_stream_of(meshlm::Backend* be);

namespace meshlm {
namespace {

void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(std::string("nccl: ") + what + ": " + ncclGetErrorString(r));
}
void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("nccl communicator: ") + what + ": " + cudaGetErrorString(e));
}

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::fp32: return ncclFloat32;
    case DType::fp64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::fp16: return ncclFloat16;
    default: throw Error(std::string("nccl: no collective on ") + dtype_name(dt));
  }
}

bool on_device(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

// Completion of work queued on the communicator's stream, as the backend's stream sees it.
class EventRequest final : public Request {
 public:
  EventRequest(cudaEvent_t ev, cudaStream_t backend) : ev_(ev), backend_(backend) {}
  ~EventRequest() override { cudaEventDestroy(ev_); }
  void wait() override { cuda_ok(cudaStreamWaitEvent(backend_, ev_, 0), "wait"); }
  bool test() override {
    if (cudaEventQuery(ev_) != cudaSuccess) return false;
    wait();
    return true;
  }

 private:
  cudaEvent_t ev_;
  cudaStream_t backend_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& boot, std::unique_ptr<Communicator> owned, Backend& be)
      : boot_(boot), owned_(std::move(owned)), be_(be), backend_stream_(meshlm_cuda_stream_of(&be)) {
    MESHLM_CHECK(backend_stream_, "nccl communicator: needs the cuda backend");
    ncclUniqueId id{};
    if (boot_.rank() == 0) nccl_check(ncclGetUniqueId(&id), "unique id");
    static_assert(sizeof(id) % 4 == 0);
    boot_.broadcast(&id, int64_t(sizeof(id) / 4), DType::fp32, 0);  // 128 bytes as 32 "floats"
    nccl_check(ncclCommInitRank(&comm_, boot_.size(), id, boot_.rank()), "init");
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
  }
  ~NcclCommunicator() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  int rank() const override { return boot_.rank(); }
  int size() const override { return boot_.size(); }
  const char* kind() const override { return "nccl"; }
  std::string library_version() const override {
    int v = 0;
    ncclGetVersion(&v);
    return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) +
           " (bootstrap: " + boot_.library_version() + ")";
  }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override { iall_reduce(buf, n, dt, op)->wait(); }
  RequestPtr iall_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    if (!on_device(buf)) return host(), boot_.iall_reduce(buf, n, dt, op);
    begin();
    nccl_check(ncclAllReduce(buf, buf, size_t(n), nccl_type(dt), op == ReduceOp::sum ? ncclSum : ncclMax, comm_, stream_),
               "all-reduce");
    return end();
  }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    ireduce_scatter(send, recv, counts, dt)->wait();
  }
  RequestPtr ireduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    if (!on_device(send)) return host(), boot_.ireduce_scatter(send, recv, counts, dt);
    const cuda::PaddedBlocks p = cuda::pad_blocks(counts);
    const size_t esz = dtype_size(dt);
    begin();
    if (!p.padded) {
      nccl_check(ncclReduceScatter(send, recv, size_t(p.block), nccl_type(dt), ncclSum, comm_, stream_), "reduce-scatter");
      return end();
    }
    char* pad = staging(size_t(p.total() + p.block) * esz);  // padded send, then this rank's block
    cuda_ok(cudaMemsetAsync(pad, 0, size_t(p.total()) * esz, stream_), "pad");
    for (size_t r = 0; r < counts.size(); r++)
      cuda_ok(cudaMemcpyAsync(pad + size_t(int64_t(r) * p.block) * esz, static_cast<const char*>(send) + size_t(p.offset[r]) * esz,
                              size_t(counts[r]) * esz, cudaMemcpyDeviceToDevice, stream_), "pad");
    char* mine = pad + size_t(p.total()) * esz;
    nccl_check(ncclReduceScatter(pad, mine, size_t(p.block), nccl_type(dt), ncclSum, comm_, stream_), "reduce-scatter");
    cuda_ok(cudaMemcpyAsync(recv, mine, size_t(counts[size_t(rank())]) * esz, cudaMemcpyDeviceToDevice, stream_), "unpad");
    return end();
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    iall_gather(send, recv, counts, dt)->wait();
  }
  RequestPtr iall_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    if (!on_device(send)) return host(), boot_.iall_gather(send, recv, counts, dt);
    const cuda::PaddedBlocks p = cuda::pad_blocks(counts);
    const size_t esz = dtype_size(dt);
    begin();
    if (!p.padded) {
      nccl_check(ncclAllGather(send, recv, size_t(p.block), nccl_type(dt), comm_, stream_), "all-gather");
      return end();
    }
    char* pad = staging(size_t(p.total() + p.block) * esz);
    char* mine = pad + size_t(p.total()) * esz;
    cuda_ok(cudaMemcpyAsync(mine, send, size_t(counts[size_t(rank())]) * esz, cudaMemcpyDeviceToDevice, stream_), "pad");
    nccl_check(ncclAllGather(mine, pad, size_t(p.block), nccl_type(dt), comm_, stream_), "all-gather");
    for (size_t r = 0; r < counts.size(); r++)
      cuda_ok(cudaMemcpyAsync(static_cast<char*>(recv) + size_t(p.offset[r]) * esz, pad + size_t(int64_t(r) * p.block) * esz,
                              size_t(counts[r]) * esz, cudaMemcpyDeviceToDevice, stream_), "unpad");
    return end();
  }
  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    if (!on_device(buf)) return host(), boot_.broadcast(buf, n, dt, root);
    begin();
    nccl_check(ncclBroadcast(buf, buf, size_t(n), nccl_type(dt), root, comm_, stream_), "broadcast");
    end()->wait();
  }
  void send(const void* buf, int64_t n, DType dt, int dest, int tag) override { isend(buf, n, dt, dest, tag)->wait(); }
  void recv(void* buf, int64_t n, DType dt, int src, int tag) override { irecv(buf, n, dt, src, tag)->wait(); }
  // NCCL matches point-to-point calls by order, not tag: the pipeline's pairs are issued in
  // the same order on both sides.
  RequestPtr isend(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    if (!on_device(buf)) return host(), boot_.isend(buf, n, dt, dest, tag);
    begin();
    nccl_check(ncclSend(buf, size_t(n), nccl_type(dt), dest, comm_, stream_), "send");
    return end();
  }
  RequestPtr irecv(void* buf, int64_t n, DType dt, int src, int tag) override {
    if (!on_device(buf)) return host(), boot_.irecv(buf, n, dt, src, tag);
    begin();
    nccl_check(ncclRecv(buf, size_t(n), nccl_type(dt), src, comm_, stream_), "recv");
    return end();
  }
  void barrier() override {
    cuda_ok(cudaStreamSynchronize(stream_), "barrier");
    boot_.barrier();
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    auto part = boot_.split(color, key);
    Communicator& ref = *part;
    return std::make_unique<NcclCommunicator>(ref, std::move(part), be_);
  }
  [[noreturn]] void abort(int code) override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    boot_.abort(code);
    std::_Exit(code);
  }

 private:
  // The collective's stream waits for everything the backend queued before it.
  void begin() {
    cudaEvent_t ev;
    cuda_ok(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event");
    cuda_ok(cudaEventRecord(ev, backend_stream_), "event");
    cuda_ok(cudaStreamWaitEvent(stream_, ev, 0), "event");
    cudaEventDestroy(ev);
  }
  RequestPtr end() {
    cudaEvent_t ev;
    cuda_ok(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event");
    cuda_ok(cudaEventRecord(ev, stream_), "event");
    return std::make_unique<EventRequest>(ev, backend_stream_);
  }
  // Host buffers are read by the bootstrap communicator once the device's queued work is done.
  void host() { be_.synchronize(); }
  char* staging(size_t bytes) {
    if (bytes > staging_bytes_) {
      cuda_ok(cudaStreamSynchronize(stream_), "staging");
      if (staging_) be_.deallocate(staging_, staging_bytes_);
      staging_ = be_.allocate(bytes);
      staging_bytes_ = bytes;
    }
    return static_cast<char*>(staging_);
  }

  Communicator& boot_;
  std::unique_ptr<Communicator> owned_;
  Backend& be_;
  cudaStream_t backend_stream_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace
}  // namespace meshlm

extern "C" __attribute__((visibility("default"))) meshlm::Communicator* meshlm_cuda_make_nccl(
    meshlm::Communicator* bootstrap, meshlm::Backend* be, char* err, int len) {
  try {
    return new meshlm::NcclCommunicator(*bootstrap, nullptr, *be);
  } catch (const std::exception& e) {
    std::snprintf(err, size_t(len), "%s", e.what());
    return nullptr;
  }
}
