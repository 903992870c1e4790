#include "parallel/mesh.h"

#include "core/error.h"

namespace meshlm {

std::string MeshShape::describe() const {
  return "dp " + std::to_string(dp) + " x tp " + std::to_string(tp) + " x pp " + std::to_string(pp);
}

Mesh::Mesh(Communicator& world, const MeshShape& shape) : world_(&world), shape_(shape) {
  MESHLM_CHECK(shape.dp >= 1 && shape.tp >= 1 && shape.pp >= 1, "dp, tp and pp must be >= 1");
  MESHLM_CHECK(shape.size() == world.size(),
               "the layout " + shape.describe() + " needs " + std::to_string(shape.size()) +
                   " ranks, but the job has " + std::to_string(world.size()) +
                   " (launch with mpirun -np " + std::to_string(shape.size()) + ")");
  const int r = world.rank();
  tp_rank_ = r % shape.tp;
  dp_rank_ = (r / shape.tp) % shape.dp;
  pp_rank_ = r / (shape.tp * shape.dp);
  // Each split is collective over the world; every rank skips the same size-1 axes.
  auto axis = [&](int size, int color, int key) {
    return size == 1 ? make_self_communicator() : world.split(color, key);
  };
  dp_ = axis(shape.dp, tp_rank_ + shape.tp * pp_rank_, dp_rank_);
  tp_ = axis(shape.tp, dp_rank_ + shape.dp * pp_rank_, tp_rank_);
  pp_ = axis(shape.pp, tp_rank_ + shape.tp * dp_rank_, pp_rank_);
  // The ends of each pipeline pair up; a middle stage is a group of its own.
  const bool end = pp_rank_ == 0 || pp_rank_ == shape.pp - 1;
  tied_ = axis(shape.pp, end ? tp_rank_ + shape.tp * dp_rank_ : shape.tp * shape.dp + r, pp_rank_);
}

}  // namespace meshlm

namespace meshlm {

Mesh::Mesh(Mesh& base, Backend& be, bool nccl)
    : world_view_(as_backend_client(base.world(), be, nccl)),
      world_(world_view_.get()),
      shape_(base.shape_),
      dp_rank_(base.dp_rank_),
      tp_rank_(base.tp_rank_),
      pp_rank_(base.pp_rank_),
      dp_(as_backend_client(base.dp(), be, nccl)),
      tp_(as_backend_client(base.tp(), be, nccl)),
      pp_(as_backend_client(base.pp(), be, nccl)),
      tied_(as_backend_client(base.tied(), be, nccl)) {}

}  // namespace meshlm
