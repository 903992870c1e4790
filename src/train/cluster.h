// A cluster described by hand rather than measured, for the layout planner (train/planner.h):
// devices per node, each device's peak rate per dtype, memory and its bandwidth, and the links
// within and between nodes. `meshlm plan --machine FILE.toml` (or a preset's name) plans for
// it; the planner then prices every GEMM on the device's roofline (train/machine.h DeviceModel)
// and every collective by where its ranks sit (in one node: the node's fabric; across nodes:
// each device's own NIC).
//
// TOML (every key required; the presets below are examples):
//   name = "DGX A100 80GB, 8 x HDR InfiniBand"
//   devices_per_node = 8
//   [device]  peak_tflops = {fp32 = 19.5, bf16 = 312}   dense, the datasheet's
//             gemm_efficiency = 0.8                     the share of peak large GEMMs reach
//             tile = 128                                a product's output tile
//             memory_gib = 80, memory_gbs = 1750        usable memory, achieved bandwidth
//             attention_score_passes = 12               (T, T) score passes per head; 0: flash
//   [node]    bus_gbs = 230, latency_us = 10            a collective's bus bandwidth in a node
//   [network] nic_gbs = 23, latency_us = 8              one device's NIC, achieved
// Presets (`--machine a100-80gb`, `h100-80gb`, `h200`): docs/parallel.md gives their sources.
#pragma once
#include <string>
#include <vector>

#include "train/machine.h"

namespace meshlm {

struct ClusterSpec {
  std::string name;
  int devices_per_node = 8;
  std::map<std::string, double> peak_tflops;  // per dtype name, dense
  double gemm_efficiency = 0.8, tile = 128, memory_gib = 80, memory_gbs = 1750, attention_score_passes = 0;
  double bus_gbs = 230, node_latency_us = 10, nic_gbs = 23, network_latency_us = 8;
};

// The presets' names, for --help and errors.
std::vector<std::string> cluster_presets();
// A preset by name, or a TOML file; throws naming the missing or wrong key.
ClusterSpec load_cluster(const std::string& name_or_path);
ClusterSpec parse_cluster(const std::string& toml_text, const std::string& where);
// Whether --machine names a cluster (a preset or a .toml file) rather than a measured profile.
bool is_cluster(const std::string& name_or_path);
// The planner's machine for `ranks` ranks of the cluster, one per device.
MachineProfile cluster_profile(const ClusterSpec& c, int ranks);
// --machine: a cluster (preset or .toml) or a measured profile file's entry for `ranks`.
MachineProfile load_machine(const std::string& name_or_path, int ranks);

}  // namespace meshlm
