#include "train/cluster.h"

#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace meshlm {

namespace {

// Fixed from datasheets and published measurements, not fitted to any training result
// (docs/parallel.md lists the sources): dense tensor-core peaks; large cuBLAS GEMMs at about
// 80% of peak on A100 and 75% on H100; STREAM-like HBM bandwidth at ~86-90% of the datasheet's;
// nccl-tests' all-reduce bus bandwidth in one node; each InfiniBand NIC at ~92% of its line rate;
// usable memory the device's less ~4-7 GiB for the CUDA context, NCCL's buffers and fragmentation.
// Attention is Megatron's unfused-score kernels of 2021-22 (scores written, softmax, dropout,
// read back; about 12 (T, T) passes over forward and backward); a flash-style kernel is 0.
const char* kA100 = R"toml(name = "DGX A100 80GB (8 x A100-SXM4-80GB, NVSwitch, 8 x 200 Gb/s HDR InfiniBand)"
devices_per_node = 8
[device]
peak_tflops = { fp32 = 19.5, bf16 = 312.0 }
gemm_efficiency = 0.8
tile = 128
memory_gib = 76
memory_gbs = 1750
attention_score_passes = 12
[node]
bus_gbs = 230
latency_us = 10
[network]
nic_gbs = 23
latency_us = 8
)toml";

const char* kH100 = R"toml(name = "DGX H100 (8 x H100-SXM5-80GB, NVSwitch, 8 x 400 Gb/s NDR InfiniBand)"
devices_per_node = 8
[device]
peak_tflops = { fp32 = 67.0, bf16 = 989.0 }
gemm_efficiency = 0.75
tile = 128
memory_gib = 76
memory_gbs = 3000
attention_score_passes = 0
[node]
bus_gbs = 360
latency_us = 10
[network]
nic_gbs = 46
latency_us = 8
)toml";

const char* kH200 = R"toml(name = "HGX H200 (8 x H200-SXM-141GB, NVSwitch, 8 x 400 Gb/s NDR InfiniBand)"
devices_per_node = 8
[device]
peak_tflops = { fp32 = 67.0, bf16 = 989.0 }
gemm_efficiency = 0.75
tile = 128
memory_gib = 134
memory_gbs = 4300
attention_score_passes = 0
[node]
bus_gbs = 360
latency_us = 10
[network]
nic_gbs = 46
latency_us = 8
)toml";

const std::map<std::string, const char*>& presets() {
  static const std::map<std::string, const char*> p = {{"a100-80gb", kA100}, {"h100-80gb", kH100}, {"h200", kH200}};
  return p;
}

double number(const toml::table& t, const char* section, const char* key, const std::string& where) {
  const auto v = section ? t[section][key] : t[key];
  if (auto d = v.value<double>()) return *d;
  throw Error(where + ": cluster key " + (section ? std::string(section) + "." : "") + key + " (a number) is missing");
}

}  // namespace

std::vector<std::string> cluster_presets() {
  std::vector<std::string> names;
  for (const auto& [name, text] : presets()) names.push_back(name);
  return names;
}

bool is_cluster(const std::string& s) {
  return presets().count(s) > 0 || (s.size() > 5 && s.substr(s.size() - 5) == ".toml");
}

ClusterSpec parse_cluster(const std::string& text, const std::string& where) {
  toml::table t;
  try {
    t = toml::parse(text, where);
  } catch (const toml::parse_error& e) {
    throw Error(where + ": " + std::string(e.description()));
  }
  ClusterSpec c;
  c.name = t["name"].value_or(std::string(where));
  c.devices_per_node = int(number(t, nullptr, "devices_per_node", where));
  const toml::table* peaks = t["device"]["peak_tflops"].as_table();
  MESHLM_CHECK(peaks && !peaks->empty(), where + ": cluster key device.peak_tflops (e.g. { fp32 = 19.5, bf16 = 312 }) is missing");
  for (const auto& [dt, v] : *peaks) {
    const auto d = v.value<double>();
    MESHLM_CHECK(d && *d > 0, where + ": device.peak_tflops." + std::string(dt.str()) + " must be a positive number");
    c.peak_tflops[std::string(dt.str())] = *d;
  }
  c.gemm_efficiency = number(t, "device", "gemm_efficiency", where);
  c.tile = number(t, "device", "tile", where);
  c.memory_gib = number(t, "device", "memory_gib", where);
  c.memory_gbs = number(t, "device", "memory_gbs", where);
  c.attention_score_passes = number(t, "device", "attention_score_passes", where);
  c.bus_gbs = number(t, "node", "bus_gbs", where);
  c.node_latency_us = number(t, "node", "latency_us", where);
  c.nic_gbs = number(t, "network", "nic_gbs", where);
  c.network_latency_us = number(t, "network", "latency_us", where);
  MESHLM_CHECK(c.devices_per_node >= 1 && c.gemm_efficiency > 0 && c.gemm_efficiency <= 1 && c.tile >= 1 &&
                   c.memory_gbs > 0 && c.bus_gbs > 0 && c.nic_gbs > 0 && c.memory_gib > 0,
               where + ": devices_per_node, tile, the bandwidths and memory must be positive, gemm_efficiency in (0, 1]");
  return c;
}

ClusterSpec load_cluster(const std::string& s) {
  auto it = presets().find(s);
  if (it != presets().end()) return parse_cluster(it->second, s);
  MESHLM_CHECK(std::filesystem::is_regular_file(s), "no cluster file " + s + " (a TOML description, or a preset: a100-80gb, h100-80gb, h200)");
  std::ifstream in(s);
  std::stringstream text;
  text << in.rdbuf();
  return parse_cluster(text.str(), s);
}

MachineProfile cluster_profile(const ClusterSpec& c, int ranks) {
  MachineProfile p;
  p.cpu = c.name;
  p.ranks = ranks;
  p.has_device = true;
  for (const auto& [dt, tf] : c.peak_tflops) p.device.peak_gflops[dt] = tf * 1e3;
  p.device.efficiency = c.gemm_efficiency;
  p.device.tile = c.tile;
  p.device.score_passes = c.attention_score_passes;
  p.memory_gbs = c.memory_gbs;
  // AdamW over fp32 masters: read master, gradient, m, v; write master, m, v and the 16-bit copy
  p.adamw_ns = 30.0 / c.memory_gbs;
  for (const char* dt : {"fp32", "bf16"}) p.crossentropy_ns[dt] = 8.0 / c.memory_gbs;  // read, write, statistics
  // Launches are asynchronous: behind kernels as long as these models', their cost is hidden.
  p.matmul_call_s = p.kernel_call_s = 0;
  // In a node: a ring at the fabric's bus bandwidth, stored as the full node's algorithm
  // bandwidth (the planner scales it to smaller groups).
  const double g = c.devices_per_node, bus = c.bus_gbs * 1e9, lat = c.node_latency_us * 1e-6;
  if (g > 1) {
    p.collectives["all_reduce"][int(g)] = {lat, bus * g / (2 * (g - 1))};
    p.collectives["reduce_scatter"][int(g)] = {lat, bus * g / (g - 1)};
    p.collectives["all_gather"][int(g)] = {lat, bus * g / (g - 1)};
    p.collectives["send_recv"][2] = {lat, bus};
  } else {
    for (const char* k : {"all_reduce", "reduce_scatter", "all_gather", "send_recv"}) p.collectives[k][2] = {lat, bus};
  }
  p.ranks_per_node = c.devices_per_node;
  p.nic = {c.network_latency_us * 1e-6, c.nic_gbs * 1e9};
  p.device_memory_bytes = c.memory_gib * double(1 << 30);
  return p;
}

MachineProfile load_machine(const std::string& s, int ranks) {
  return is_cluster(s) ? cluster_profile(load_cluster(s), ranks) : load_machine_profile(s, ranks);
}

}  // namespace meshlm
