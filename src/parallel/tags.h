// The MPI tags of meshlm's point-to-point messages, owned here so that no two users collide.
// All stay below 32768, the smallest MPI_TAG_UB the MPI standard allows.
//   [0, kPipelineEnd)   the pipeline executor: micro-batch i's activation into the receiver's chunk c
//                       2 (c m + i), its gradient 2 (c m + i) + 1 (m micro-batches per step)
//   kPipelineEval       the pipeline's forward-only passes (evaluation), between steps
//   kCheckpoint         a stage's whole tensors to pipeline rank 0 (train/checkpointer.cpp)
//   kNumerics           a stage's numerics report entries to pipeline rank 0
#pragma once

namespace meshlm::tags {

constexpr int kPipelineEnd = 32000;
constexpr int kPipelineEval = 32000;
constexpr int kCheckpoint = 32001;
constexpr int kNumerics = 32002;

inline int pipeline_activation(int micro_batch, int chunk = 0, int m = 0) { return 2 * (chunk * m + micro_batch); }
inline int pipeline_grad(int micro_batch, int chunk = 0, int m = 0) { return 2 * (chunk * m + micro_batch) + 1; }

}  // namespace meshlm::tags
