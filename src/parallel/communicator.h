// The collectives a training step needs, behind one interface. Implementations: MPI (between
// processes and hosts; parallel/mpi_communicator.cpp), and local (threads of one process sharing
// memory; for unit tests of parallel logic without mpirun). NCCL comes later behind the same
// class. Buffers are fp32 or bf16 (sums of bf16 accumulate each pairwise addition in fp32 and
// round once per addition), and fp64 for scalars such as a sum of squares. Every rank of a communicator must make the same calls in the same
// order (the MPI rule).
//
// Non-blocking calls return a Request; the buffer must stay untouched until wait() returns.
// test() lets a caller drive progress (MPI progresses non-blocking collectives inside MPI calls).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace meshlm {

class Backend;

enum class ReduceOp { sum, max };

class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;  // true when complete
};
using RequestPtr = std::unique_ptr<Request>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* kind() const = 0;  // "mpi", "local" or "self"
  // The library behind it, for `meshlm info`: "Open MPI v4.1.4", "threads of one process", ...
  virtual std::string library_version() const { return kind(); }

  // In place: buf (n) on every rank becomes the elementwise reduction over the ranks.
  virtual void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op = ReduceOp::sum) = 0;
  virtual RequestPtr iall_reduce(void* buf, int64_t n, DType dt, ReduceOp op = ReduceOp::sum) = 0;
  // send holds sum(counts) elements, the blocks of ranks 0, 1, ... in order; rank r receives
  // into recv the sum over ranks of block r (counts[r] elements). Counts may differ.
  virtual void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts,
                              DType dt) = 0;
  // Rank r contributes counts[r] elements from send; every rank receives all blocks in rank
  // order into recv (sum(counts) elements).
  virtual void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts,
                          DType dt) = 0;
  // Non-blocking forms of the two (ZeRO-2/3's overlapped gathers and reductions). The default
  // runs the blocking call and returns a completed request (the local and self communicators).
  virtual RequestPtr ireduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt);
  virtual RequestPtr iall_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt);
  virtual void broadcast(void* buf, int64_t n, DType dt, int root) = 0;
  virtual void send(const void* buf, int64_t n, DType dt, int dest, int tag) = 0;
  virtual void recv(void* buf, int64_t n, DType dt, int src, int tag) = 0;
  // Non-blocking point-to-point (pipeline stages): buf stays untouched until wait() returns.
  virtual RequestPtr isend(const void* buf, int64_t n, DType dt, int dest, int tag) = 0;
  virtual RequestPtr irecv(void* buf, int64_t n, DType dt, int src, int tag) = 0;
  virtual void barrier() = 0;
  // MPI_Comm_split: ranks with the same color form a new communicator, ordered by key (then by
  // rank in this one).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Ends the whole job (every rank) with this exit code: an error on one rank must not leave
  // the others waiting in a collective forever.
  [[noreturn]] virtual void abort(int code) = 0;
};

// The world communicator of this process: MPI's when MPI is built and the process was started
// by mpirun/srun (or mpi_always), else a communicator of size 1 that needs no MPI at all.
// Initializes MPI once (thread level "funneled"); finalize_world() at exit.
std::unique_ptr<Communicator> make_world_communicator(bool mpi_always = false);
void finalize_world();
// True if this process was started by an MPI launcher (OpenMPI's or PMI's environment).
bool launched_by_mpi();

// N threads of one process as N ranks: make_local_group(N) returns one communicator per rank;
// each must be used by its own thread.
std::vector<std::unique_ptr<Communicator>> make_local_group(int n);

// A single rank: every collective is a copy or a no-op.
std::unique_ptr<Communicator> make_self_communicator();

// `inner` as a declared client of `be`'s memory: the same collectives, each run with the
// backend's memory open to it (Backend::begin_client_access; the guarded backend needs this,
// the others do nothing). Buffers are backend buffers or host memory. split() gives views too.
// `inner` must outlive the view.
// Backends whose memory the host cannot address (cuda) get as_staged_client instead, or with
// `nccl` (and more than one rank) NCCL between the devices (libmeshlm_cuda.so's communicator).
std::unique_ptr<Communicator> as_backend_client(Communicator& inner, Backend& be, bool nccl = false);
// `inner` (which needs host buffers: MPI, local) over `be`'s buffers: each call's inputs are
// downloaded to host copies and its results uploaded back (parallel/staged_communicator.cpp).
std::unique_ptr<Communicator> as_staged_client(Communicator& inner, Backend& be);

}  // namespace meshlm
