// What the layout planner (train/planner.h) knows of a machine: how fast its ranks multiply
// matrices (by shape and dtype), run attention, stream memory and step AdamW, and how long each
// collective takes per group size. `meshlm plan --calibrate` measures it on the ranks of the job
// it runs in, all of them at once (so ranks that share cores, memory or a node are measured as
// they will train), into a profile file keyed by the job's rank count; a profile can also be
// written by hand for a cluster (docs/parallel.md).
//
// Profile file (JSON): {"cpu": "...", "profiles": {"<ranks>": {
//   "threads_per_rank": 1,
//   "matmul": {"fp32 forward in_out": [[N, C, OC, gflops], ...], ...}  a Linear's kernels over a grid,
//                                                                    forward and backward, both layouts
//   "attention": {"fp32": [[T, HS, gflops], ...], ...},              forward + backward, per FLOP
//   "memory_gbs": 18.5,                                             a streaming kernel's read + write
//   "adamw_ns": 1.3,                                                per element (fp32 masters)
//   "crossentropy_ns": {"fp32": 0.9},                               per logit, forward + backward
//   "matmul_call_s": 1e-5, "kernel_call_s": 5e-6,                   the fixed cost of a call
//   "micro_batch_s": 1e-4, "block_s": 2e-5, "step_overhead_s": 1e-3,  the trainer outside kernels
//   "collectives": {"all_reduce": {"2": [latency_s, bytes_per_s]}, ...}  per group size
// }}}
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/dtype.h"
#include "parallel/mesh.h"

namespace meshlm {

struct LinkCost {
  double latency_s = 0, bytes_per_s = 1e12;
  double seconds(double bytes) const { return bytes > 0 ? latency_s + bytes / bytes_per_s : 0; }
};

// A device known from its datasheet rather than measured (a cluster description,
// train/cluster.h): a product runs at the roofline of its FLOPs at `efficiency` x the dtype's
// peak (less the tiles it wastes on a dimension that is not a multiple of `tile`) and its
// operands' bytes at the memory bandwidth; attention adds `score_passes` reads or writes of its
// (T, T) score matrix per (batch, head) over forward and backward (0: a fused, flash-style kernel).
struct DeviceModel {
  std::map<std::string, double> peak_gflops;  // per dtype name ("fp32", "bf16")
  double efficiency = 0.8, tile = 128, score_passes = 0;
};

struct MachineProfile {
  std::string cpu;
  int ranks = 1, threads_per_rank = 1;
  // (N, C, OC, GFLOP/s) per "<dtype> <forward|backward> <in_out|out_in>": a Linear's kernel,
  // FLOPs as the layers count them (2 N C OC forward, 4 N C OC backward)
  std::map<std::string, std::vector<std::array<double, 4>>> matmul;
  // (T, HS, GFLOP/s) per dtype name: causal attention forward and backward, FLOPs as the layers count them
  std::map<std::string, std::vector<std::array<double, 3>>> attention;
  double memory_gbs = 10, adamw_ns = 2;
  // the fixed cost of one call (threads forked and joined, a primitive looked up): of a Linear's
  // kernel and of a memory-bound one, measured at the smallest shapes
  double matmul_call_s = 0, kernel_call_s = 0;
  // What the trainer spends outside the kernels (train/planner.h calibrate_trainer): per
  // micro-batch (reading it, its targets, hooks), per block per micro-batch (the kernel calls as
  // the trainer strings them together, beyond the calls' own cost), and per step.
  double micro_batch_s = 0, block_s = 0, step_overhead_s = 0;
  std::map<std::string, double> crossentropy_ns;  // per dtype name
  // collective name -> group size -> cost; "send_recv" for pipeline boundaries
  std::map<std::string, std::map<int, LinkCost>> collectives;
  // A cluster (train/cluster.h), else measured grids and a one-node machine:
  bool has_device = false;
  DeviceModel device;
  // ranks_per_node > 0: a group whose ranks span nodes moves its data over the network, each
  // device through its own NIC: `nic` is one device's latency and bandwidth, so a group holding
  // k ranks of every node reaches k x that bandwidth.
  int ranks_per_node = 0;
  LinkCost nic;
  double device_memory_bytes = 0;  // > 0: the memory one rank may use (else the host's)

  // GFLOP/s of a Linear's forward or backward over (N, C) -> (N, OC) in dt: interpolated in log
  // space between the grid's nearest shapes (clamped to the grid's range).
  double matmul_gflops(DType dt, bool backward, bool out_in, double N, double C, double OC) const;
  double attention_gflops(DType dt, double T, double HS) const;
  // Seconds of one collective moving `bytes` per rank in a group of `group` ranks (0 for 1 rank)
  // whose members are `stride` ranks apart (tp 1, dp tp, pp tp x dp: the mesh's rank order).
  double collective_seconds(const std::string& what, int group, double bytes, int stride = 1) const;

  nlohmann::json to_json() const;
  static MachineProfile from_json(const nlohmann::json& j, int ranks);
};

// Measures this machine with every rank of `mesh`'s world at once (every rank calls it); `log`
// gets progress on rank 0. quick: a coarse grid and small collectives (seconds, for tests and a
// first look), else the full grid (about a minute).
MachineProfile calibrate_machine(Backend& be, Mesh& mesh, std::ostream& log, bool quick = false);

// Reads the profile for `ranks` from a profile file; throws naming what is missing (and how to
// calibrate it).
MachineProfile load_machine_profile(const std::string& path, int ranks);
// Adds (or replaces) the profile's entry in the file, keeping the others.
void save_machine_profile(const std::string& path, const MachineProfile& p);

}  // namespace meshlm
