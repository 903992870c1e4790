// Saves a training run's checkpoint from any layout, through the plan, without building whole
// models: every parameter's whole tensor (and its AdamW moments) is assembled from the slices
// the ranks hold. The global index of a slice is its ParamEntry (tensor name, global shape,
// sharding and part: ParamEntry::for_each_run maps its elements into the whole tensor); the
// per-rank checkpoint files of fully sharded state will store exactly that.
//
//   tp 1, pp 1          rank 0 writes the whole state; under ZeRO-1 every data-parallel rank
//                       writes its own slice of the moments (optimizer.rank<r>-of-<n>)
//   otherwise           ZeRO-1 moments all-gathered over dp; each tensor-parallel group
//                       all-gathers its slices into whole tensors of its stage; the stages send
//                       theirs to pipeline rank 0 (the ranks at tp 0, dp 0), which writes
//
// Loading needs none of this: load_checkpoint (train/checkpoint.h) takes each rank's slice
// of the whole tensors in the files directly.
#pragma once
#include <vector>
#include <string>

#include "model/model.h"
#include "optim/adamw.h"
#include "parallel/mesh.h"
#include "train/checkpoint.h"

namespace meshlm {

class Checkpointer {
 public:
  Checkpointer(Mesh& mesh, Model& model, AdamW& opt) : mesh_(mesh), model_(model), opt_(opt) {}
  // Every rank calls this together; the masters must be whole on every rank (GradSync::gather_masters).
  void save(const std::string& dir, const TrainerState& st, const nlohmann::json& config,
            const std::string& tokenizer_file);

 private:
  struct HostState;
  std::vector<float> masters();   // this tp rank's fp32 masters whole (a dp gather under ZeRO-2/3)
  HostState local_state();        // this rank's params and all of its moments, on the host
  HostState whole_stage(const HostState& local);  // this stage's whole tensors (tp gather)
  HostState whole_model(const HostState& stage);  // pipeline rank 0: every stage's, by name
  Mesh& mesh_;
  Model& model_;
  AdamW& opt_;
};

}  // namespace meshlm
