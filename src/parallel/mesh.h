// The device mesh: the world's ranks arranged as dp x tp x pp, built once and passed by
// reference to whoever needs it. Rank order (Megatron's): tp varies fastest, then dp, then pp:
//     world_rank = tp_rank + tp * (dp_rank + dp * pp_rank)
// so a tensor-parallel group is a run of neighbouring ranks (on one host, when hosts hold
// consecutive ranks). One sub-communicator per axis; an axis of size 1 gets a single-rank
// communicator and costs nothing.
#pragma once
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace meshlm {

struct MeshShape {
  int dp = 1, tp = 1, pp = 1;
  int size() const { return dp * tp * pp; }
  std::string describe() const;  // "dp 2 x tp 1 x pp 1"
};

class Mesh {
 public:
  // Throws meshlm::Error (the same one-line message on every rank) unless dp tp pp = world size.
  Mesh(Communicator& world, const MeshShape& shape);
  // The same mesh with every group a declared client of `be`'s memory (as_backend_client; on a
  // device backend through host copies, or NCCL with `nccl`): what the trainer uses, since its
  // collectives move tensor buffers. `base` must outlive it.
  Mesh(Mesh& base, Backend& be, bool nccl = false);
  const MeshShape& shape() const { return shape_; }
  int rank() const { return world_->rank(); }
  int dp_rank() const { return dp_rank_; }
  int tp_rank() const { return tp_rank_; }
  int pp_rank() const { return pp_rank_; }
  Communicator& world() { return *world_; }
  Communicator& dp() { return *dp_; }
  Communicator& tp() { return *tp_; }
  Communicator& pp() { return *pp_; }
  // The first and the last pipeline stage of this rank's pipeline (same dp and tp coordinates),
  // which both hold the tied embedding / LM head and sum its gradient; size 1 when pp is 1 or
  // this rank is on a middle stage.
  Communicator& tied() { return *tied_; }

 private:
  std::unique_ptr<Communicator> world_view_;  // a client view of another mesh's world (else null)
  Communicator* world_;
  MeshShape shape_;
  int dp_rank_ = 0, tp_rank_ = 0, pp_rank_ = 0;
  std::unique_ptr<Communicator> dp_, tp_, pp_, tied_;
};

}  // namespace meshlm
