// `meshlm plan`: predicts the step time and memory of a parallel layout from the layers' own
// cost records (model/layer.h: every GEMM's shape, every memory-bound kernel's bytes, every
// tensor-parallel collective's bytes, the activations kept) and a machine profile
// (train/machine.h), enumerates the valid layouts of a rank count, and ranks them.
//
// The step, per rank (docs/parallel.md states the model and its known errors):
//   compute    sum over this stage's cost records for one micro-batch: GEMM FLOPs at the
//              profile's rate for that shape and dtype, attention at its measured rate,
//              memory-bound bytes at the measured bandwidth, tp collectives at their measured
//              latency and bandwidth; recompute adds the forward parts it reruns; times the
//              micro-batches (a pipeline: (m + pp - 1) x its slowest stage, plus boundary sends)
//   data       the dp collectives of the ZeRO stage (all-reduce, or reduce-scatter + all-gather;
//              ZeRO-3 gathers the weights twice per micro-batch), counted whole: on a machine
//              whose ranks share the cores communication is CPU work (BENCHMARKS.md)
//   optimizer  AdamW over the rank's shard, the 16-bit weight refresh, zeroing and norms
// Memory per rank: the stage's formula (train/memory_estimate.h) for the most loaded stage.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "train/config.h"
#include "train/machine.h"

namespace meshlm {

struct Prediction {
  TrainConfig cfg;  // the layout (dp, tp, pp, micro_batch_size, recompute, zero, sequence_parallel, pp_schedule)
  double step_s = 0, compute_s = 0, tp_s = 0, dp_s = 0, pp_s = 0, optimizer_s = 0, bubble = 0;
  double memory_bytes = 0;  // the most loaded rank's, by the stage's formula
  double activation_bytes = 0;  // of that rank: what its micro-batches in flight keep
  double first_stage_bytes = 0;  // rank 0's (the first stage's), to compare with a run's rank 0
  // seconds per step by kind, named as the profiler names kernels where they match
  // ("matmul.forward", "matmul.backward", "attention.forward", "attention.backward",
  // "memory-bound", "tp comm", "dp comm", "pipeline", "optimizer"); the slowest stage's
  std::map<std::string, double> breakdown;
  bool fits = true;
  std::string layout() const;    // "dp 2 x tp 1 x pp 1, mb 2, zero 1, recompute none"
  std::string dominant() const;  // "GEMMs 71%, data-parallel reduction 18%"
};

// The prediction for cfg's layout (cfg validated by the caller).
Prediction predict_step(const TrainConfig& cfg, const MachineProfile& m);
// Only its memory per rank (memory_bytes, activation_bytes): the most loaded stage's.
void predict_memory(const TrainConfig& cfg, Prediction& p);

// Every valid layout of `ranks` ranks for cfg's model, global batch and sequence length (cfg's
// layout keys are ignored), predicted and sorted fastest first; those over `memory_limit` bytes
// per rank are kept, marked as not fitting and not priced (step_s infinite), after the others.
std::vector<Prediction> plan_layouts(const TrainConfig& cfg, int ranks, const MachineProfile& m, double memory_limit);

// The trainer's time outside the kernels, measured: three tiny models (1 and 4 blocks of C 32,
// 2 and 16 micro-batches of one 16-token sequence per rank) run through `bench` on every rank of
// `world` (data parallel), their measured steps less what `m` predicts give m.micro_batch_s,
// m.block_s and m.step_overhead_s (none of the layouts a user plans).
void calibrate_trainer(MachineProfile& m, Communicator& world, std::ostream& log);

// --layout auto: sets cfg's layout keys to the fastest layout of `ranks` that fits, and returns
// its prediction (throws when none fits).
Prediction choose_layout(TrainConfig& cfg, int ranks, const MachineProfile& m, double memory_limit);

}  // namespace meshlm
