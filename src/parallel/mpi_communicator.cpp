// The MPI communicator (OpenMPI from Debian). fp32 buffers travel as MPI_FLOAT with MPI_SUM /
// MPI_MAX; bf16 buffers as 16-bit integers with user-defined reductions that add (or compare)
// in fp32 and round once per pairwise step. Counts are MPI ints: a single call moves at most
// 2^31 - 1 elements (the gradient buckets are far smaller).
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/lowp.h"
#include "parallel/communicator.h"

#ifdef MESHLM_WITH_MPI
#include <mpi.h>
#endif

namespace meshlm {

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_ID"})
    if (std::getenv(v)) return true;
  return false;
}

#ifdef MESHLM_WITH_MPI
namespace {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(std::string(what) + ": " + std::string(msg, size_t(len)));
}

int mpi_count(int64_t n) {
  MESHLM_CHECK(n >= 0 && n <= std::numeric_limits<int>::max(), "MPI: count " + std::to_string(n) + " exceeds an int");
  return int(n);
}

void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; i++) b[i] = lowp::f32_to_bf16(lowp::bf16_to_f32(a[i]) + lowp::bf16_to_f32(b[i]));
}
void bf16_max(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; i++)
    if (lowp::bf16_to_f32(a[i]) > lowp::bf16_to_f32(b[i])) b[i] = a[i];
}

// The user-defined bf16 operations, created once per world and shared by its sub-communicators.
struct Bf16Ops {
  MPI_Op sum = MPI_OP_NULL, max = MPI_OP_NULL;
  Bf16Ops() {
    check_mpi(MPI_Op_create(&bf16_sum, 1, &sum), "MPI_Op_create");
    check_mpi(MPI_Op_create(&bf16_max, 1, &max), "MPI_Op_create");
  }
  ~Bf16Ops() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Op_free(&sum);
    MPI_Op_free(&max);
  }
};

struct MpiRequest final : Request {
  MPI_Request req = MPI_REQUEST_NULL;
  std::vector<int> counts, displs;  // a v-collective's arrays, alive until it completes
  void wait() override { check_mpi(MPI_Wait(&req, MPI_STATUS_IGNORE), "MPI_Wait"); }
  bool test() override {
    int done = 0;
    check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return done != 0;
  }
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned, std::shared_ptr<Bf16Ops> ops)
      : comm_(comm), owned_(owned), ops_(std::move(ops)) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "mpi"; }
  std::string library_version() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    const std::string v(version, size_t(len));
    return v.substr(0, v.find(','));  // "Open MPI v4.1.4"
  }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, buf, mpi_count(n), type(dt), mpi_op(dt, op), comm_), "MPI_Allreduce");
  }
  RequestPtr iall_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    auto r = std::make_unique<MpiRequest>();
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, buf, mpi_count(n), type(dt), mpi_op(dt, op), comm_, &r->req),
              "MPI_Iallreduce");
    return r;
  }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    MESHLM_CHECK(int(counts.size()) == size_, "reduce_scatter: one count per rank");
    std::vector<int> c;
    for (int64_t x : counts) c.push_back(mpi_count(x));
    check_mpi(MPI_Reduce_scatter(send, recv, c.data(), type(dt), mpi_op(dt, ReduceOp::sum), comm_),
              "MPI_Reduce_scatter");
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    std::vector<int> c, displs;
    const bool in_place = gather_layout(send, recv, counts, dt, c, displs);
    check_mpi(MPI_Allgatherv(in_place ? MPI_IN_PLACE : send, c[size_t(rank_)], type(dt), recv, c.data(),
                             displs.data(), type(dt), comm_),
              "MPI_Allgatherv");
  }
  RequestPtr iall_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    auto r = std::make_unique<MpiRequest>();
    const bool in_place = gather_layout(send, recv, counts, dt, r->counts, r->displs);
    check_mpi(MPI_Iallgatherv(in_place ? MPI_IN_PLACE : send, r->counts[size_t(rank_)], type(dt), recv,
                              r->counts.data(), r->displs.data(), type(dt), comm_, &r->req),
              "MPI_Iallgatherv");
    return r;
  }
  RequestPtr ireduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    MESHLM_CHECK(int(counts.size()) == size_, "reduce_scatter: one count per rank");
    auto r = std::make_unique<MpiRequest>();
    for (int64_t x : counts) r->counts.push_back(mpi_count(x));
    check_mpi(MPI_Ireduce_scatter(send, recv, r->counts.data(), type(dt), mpi_op(dt, ReduceOp::sum), comm_, &r->req),
              "MPI_Ireduce_scatter");
    return r;
  }
  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    check_mpi(MPI_Bcast(buf, mpi_count(n), type(dt), root, comm_), "MPI_Bcast");
  }
  void send(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    check_mpi(MPI_Send(buf, mpi_count(n), type(dt), dest, tag, comm_), "MPI_Send");
  }
  void recv(void* buf, int64_t n, DType dt, int src, int tag) override {
    check_mpi(MPI_Recv(buf, mpi_count(n), type(dt), src, tag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
  }
  RequestPtr isend(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    auto r = std::make_unique<MpiRequest>();
    check_mpi(MPI_Isend(buf, mpi_count(n), type(dt), dest, tag, comm_, &r->req), "MPI_Isend");
    return r;
  }
  RequestPtr irecv(void* buf, int64_t n, DType dt, int src, int tag) override {
    auto r = std::make_unique<MpiRequest>();
    check_mpi(MPI_Irecv(buf, mpi_count(n), type(dt), src, tag, comm_, &r->req), "MPI_Irecv");
    return r;
  }
  void barrier() override { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub;
    check_mpi(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    return std::make_unique<MpiCommunicator>(sub, true, ops_);
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(comm_, code);
    std::_Exit(code);
  }

 private:
  // Allgatherv's counts and displacements; whether send is this rank's block of recv (in place).
  bool gather_layout(const void* send, const void* recv, const std::vector<int64_t>& counts, DType dt,
                     std::vector<int>& c, std::vector<int>& displs) const {
    MESHLM_CHECK(int(counts.size()) == size_, "all_gather: one count per rank");
    int off = 0;
    for (int64_t x : counts) {
      c.push_back(mpi_count(x));
      displs.push_back(off);
      off += c.back();
    }
    return static_cast<const char*>(recv) + size_t(displs[size_t(rank_)]) * dtype_size(dt) == send;
  }

  static MPI_Datatype type(DType dt) {
    if (dt == DType::fp32) return MPI_FLOAT;
    if (dt == DType::fp64) return MPI_DOUBLE;
    if (dt == DType::bf16 || dt == DType::fp16) return MPI_UINT16_T;  // fp16: moved, not reduced
    throw Error(std::string("MPI communicator: buffers are fp32, fp64 or bf16, not ") + dtype_name(dt));
  }
  MPI_Op mpi_op(DType dt, ReduceOp op) const {
    MESHLM_CHECK(dt != DType::fp16, "MPI communicator: fp16 buffers can be moved but not reduced");
    if (dt == DType::bf16) return op == ReduceOp::sum ? ops_->sum : ops_->max;
    return op == ReduceOp::sum ? MPI_SUM : MPI_MAX;
  }
  MPI_Comm comm_;
  bool owned_;
  std::shared_ptr<Bf16Ops> ops_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_world_communicator(bool mpi_always) {
  if (!mpi_always && !launched_by_mpi()) return make_self_communicator();
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  }
  // Errors come back as return codes (turned into meshlm::Error), not as MPI's own abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false, std::make_shared<Bf16Ops>());
}

void finalize_world() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

#else

std::unique_ptr<Communicator> make_world_communicator(bool mpi_always) {
  MESHLM_CHECK(!mpi_always && !launched_by_mpi(),
               "this meshlm was built without MPI (MESHLM_MPI=OFF) but was started by an MPI launcher");
  return make_self_communicator();
}
void finalize_world() {}

#endif

}  // namespace meshlm
