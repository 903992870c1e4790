#include "train/machine.h"

#include <omp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "core/error.h"
#include "core/files.h"

namespace meshlm {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The best of `reps` timings of f (after one untimed call), every rank timing together: a
// barrier before each so ranks that share the machine run at once, and the slowest rank's
// time kept (what a step waits for).
template <class F>
double timed(Communicator& world, int reps, F&& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    world.barrier();
    const auto t0 = Clock::now();
    f();
    double s = since(t0);
    world.all_reduce(&s, 1, DType::fp64, ReduceOp::max);
    best = std::min(best, s);
  }
  return best;
}

// The grid's value at x (clamped to the grid's range) by inverse-distance weighting in log
// space: the 2^D nearest grid points, each weighted by 1 / distance^2, their logarithms averaged
// (an exact grid point is its own value).
template <size_t D>
double interpolate(const std::vector<std::array<double, D + 1>>& grid, const std::array<double, D>& x) {
  MESHLM_CHECK(!grid.empty(), "machine profile: an empty table");
  std::array<double, D> q = x;  // clamped to the grid's range on every axis
  for (size_t i = 0; i < D; i++) {
    double lo = grid[0][i], hi = grid[0][i];
    for (const auto& g : grid) lo = std::min(lo, g[i]), hi = std::max(hi, g[i]);
    q[i] = std::clamp(x[i], lo, hi);
  }
  std::vector<std::pair<double, double>> by_distance;  // (distance^2 in log space, value)
  for (const auto& g : grid) {
    double d2 = 0;
    for (size_t i = 0; i < D; i++) {
      const double a = std::log2(std::max(1.0, q[i])), b = std::log2(std::max(1.0, g[i]));
      d2 += (a - b) * (a - b);
    }
    by_distance.push_back({d2, g[D]});
  }
  std::sort(by_distance.begin(), by_distance.end());
  if (by_distance[0].first < 1e-12) return by_distance[0].second;
  const size_t n = std::min<size_t>(by_distance.size(), size_t(1) << D);
  double wsum = 0, vsum = 0;
  for (size_t i = 0; i < n; i++) {
    const double w = 1.0 / by_distance[i].first;
    wsum += w;
    vsum += w * std::log(by_distance[i].second);
  }
  return std::exp(vsum / wsum);
}

std::string matmul_key(DType dt, bool backward, bool out_in) {
  return std::string(dtype_name(dt)) + (backward ? " backward" : " forward") + (out_in ? " out_in" : " in_out");
}

// A Linear's kernels over a grid of (N, C, OC). Operands rotate through a window of 1M elements
// each (~20 MB together: within a server's last-level cache, not within L2), as a step's
// layers reuse what the previous micro-batch and the other products left there; measured with
// operands rotating through 96 MB instead, small micro-batches of GPT-2 124M were predicted
// 20-44% slow (BENCHMARKS.md).
void calibrate_matmul(Backend& be, Communicator& world, DType dt, MachineProfile& p, std::ostream& log, bool quick) {
  const std::vector<int64_t> rows = quick ? std::vector<int64_t>{128, 2048} : std::vector<int64_t>{32, 128, 512, 2048, 8192};
  const std::vector<int64_t> feats = quick ? std::vector<int64_t>{64, 1024} : std::vector<int64_t>{64, 256, 1024, 4096};
  const std::vector<int64_t> outs = quick ? std::vector<int64_t>{64, 1024} : std::vector<int64_t>{64, 256, 1024, 4096, 16384};
  const int64_t pool = (quick ? 4 : 24) << 20;  // elements per operand buffer (48-96 MB; quick: 8-16 MB)
  const int64_t window = 1 << 20;               // operands rotate within 1M elements each
  Tensor x({pool}, dt, be), w({pool}, dt, be), y({pool}, dt, be), dx({pool}, dt, be), dw({pool}, DType::fp32, be);
  const size_t esz = dtype_size(dt);
  for (bool out_in : {false, true})
    for (int64_t N : rows)
      for (int64_t C : feats)
        for (int64_t OC : outs) {
          const double flops = 2.0 * double(N) * double(C) * double(OC);
          if (flops > 3e10 || N * std::max(C, OC) > pool || C * OC > pool) continue;
          const int calls = std::max(1, int((quick ? 5e7 : 5e8) / flops));
          int64_t at = 0;
          auto next = [&](int64_t n) {  // the next region of the rotation window (one past it: from 0)
            if (at + n > std::max(window, n)) at = 0;
            const int64_t o = at;
            at += (n + 4095) / 4096 * 4096;
            return o;
          };
          const WeightLayout layout = out_in ? WeightLayout::out_in : WeightLayout::in_out;
          auto ptr = [&](Tensor& t, int64_t o, size_t e) { return static_cast<char*>(t.data()) + size_t(o) * e; };
          const double fwd = timed(world, 3, [&] {
            for (int i = 0; i < calls; i++) {
              const int64_t ox = next(N * C), ow = next(C * OC), oy = next(N * OC);
              be.matmul_forward(dt, ptr(y, oy, esz), ptr(x, ox, esz), ptr(w, ow, esz), nullptr, N, C, OC, layout);
            }
          });
          const double bwd = timed(world, 3, [&] {
            for (int i = 0; i < calls; i++) {
              const int64_t ox = next(N * C), ow = next(C * OC), oy = next(N * OC);
              be.matmul_backward(dt, ptr(dx, ox, esz), ptr(dw, ow, 4), nullptr, ptr(y, oy, esz), ptr(x, ox, esz),
                                 ptr(w, ow, esz), N, C, OC, layout);
            }
          });
          p.matmul[matmul_key(dt, false, out_in)].push_back({double(N), double(C), double(OC), flops * calls / fwd / 1e9});
          p.matmul[matmul_key(dt, true, out_in)].push_back({double(N), double(C), double(OC), 2 * flops * calls / bwd / 1e9});
        }
  log << "  matmul " << dtype_name(dt) << ": " << p.matmul[matmul_key(dt, false, false)].size() << " shapes x 2 layouts\n";
}

// The fused softmax cross-entropy (forward and its gradient in place), per logit.
double calibrate_crossentropy(Backend& be, Communicator& world, DType dt) {
  const int64_t N = 1024, V = 32768;
  Tensor logits({N * V}, dt, be), losses({N}, DType::fp32, be);
  Tensor targets({N}, DType::fp32, be);  // zero bits: every target is token 0
  const auto* t = static_cast<const int32_t*>(targets.data());
  const double s = timed(world, 3, [&] {
    be.crossentropy_forward_backward(dt, losses.data(), logits.data(), t, 0.0f, N, V, V);
  });
  return s / double(N * V) * 1e9;
}

std::vector<std::array<double, 3>> calibrate_attention(Backend& be, Communicator& world, DType dt) {
  std::vector<std::array<double, 3>> out;
  for (int64_t T : {64, 256, 1024})
    for (int64_t HS : {64, 128}) {
      const int64_t NH = 4, B = std::max<int64_t>(1, int64_t(4096 / T));
      AttentionShape s{B, T, NH, NH, HS, 3 * NH * HS, 3 * NH * HS};
      const int64_t N = B * T, C3 = 3 * NH * HS;
      Tensor qkv({N * C3}, dt, be), y({N * NH * HS}, dt, be), dy({N * NH * HS}, dt, be), dqkv({N * C3}, dt, be);
      Tensor lse({B * NH * T}, DType::fp32, be);
      const char* q = static_cast<const char*>(qkv.data());
      const size_t esz = dtype_size(dt), off = size_t(NH * HS) * esz;
      char* dq = static_cast<char*>(dqkv.data());
      const double sec = timed(world, 3, [&] {
        be.attention_forward(dt, y.data(), lse.data(), q, q + off, q + 2 * off, s);
        be.attention_backward(dt, dq, dq + off, dq + 2 * off, dy.data(), q, q + off, q + 2 * off, y.data(), lse.data(), s);
      });
      const double flops = 6.0 * 2.0 * double(B * NH * T) * double(T) * double(HS);  // 2 forward + 4 backward products
      out.push_back({double(T), double(HS), flops / sec / 1e9});
    }
  return out;
}

void calibrate_collectives(Backend& be, Communicator& world, MachineProfile& p, bool quick) {
  const int N = world.size();
  for (int g = 2; g <= N; g++) {
    if (N % g) continue;
    std::unique_ptr<Communicator> c = world.split(world.rank() / g, world.rank());
    const int64_t small = 1024, large = quick ? 256 << 10 : 4 << 20;  // elements (fp32): 4 KB and 16 MB (quick: 1 MB)
    Tensor a({large * g}, DType::fp32, be), b({large * g}, DType::fp32, be);
    auto fit = [&](const std::function<void(int64_t)>& f) {
      const double ts = timed(world, 5, [&] { f(small); }), tl = timed(world, 3, [&] { f(large); });
      const double bw = double(large - small) * 4 / std::max(1e-9, tl - ts);
      return LinkCost{std::max(0.0, ts - double(small) * 4 / bw), bw};
    };
    p.collectives["all_reduce"][g] = fit([&](int64_t n) { c->all_reduce(a.data(), n, DType::fp32); });
    p.collectives["reduce_scatter"][g] = fit([&](int64_t n) {
      c->reduce_scatter(a.data(), b.data(), std::vector<int64_t>(size_t(g), n / g), DType::fp32);
    });
    p.collectives["all_gather"][g] = fit([&](int64_t n) {
      c->all_gather(a.data(), b.data(), std::vector<int64_t>(size_t(g), n / g), DType::fp32);
    });
    if (g == 2)
      p.collectives["send_recv"][2] = fit([&](int64_t n) {
        if (c->rank() == 0) c->send(a.data(), n, DType::fp32, 1, 7);
        else c->recv(a.data(), n, DType::fp32, 0, 7);
      });
  }
}

// JSON indented, except that an array of numbers is written on one line (a table row).
std::string dump_rows(const nlohmann::json& j) {
  const std::string in = j.dump(1);
  std::string out;
  for (size_t i = 0; i < in.size(); i++) {
    const size_t end = in[i] == '[' ? in.find(']', i) : std::string::npos;
    if (end != std::string::npos && in.find_first_of("[{\"", i + 1) > end) {  // numbers only
      for (size_t k = i; k <= end; k++)
        if (!std::isspace(static_cast<unsigned char>(in[k]))) out += in[k];
      i = end;
    } else {
      out += in[i];
    }
  }
  return out;
}

}  // namespace

namespace {
// A product of `flops` over `bytes` of operands on the device's roofline; `a`, `b` the output's
// dimensions (the tiles), with its peak for dt.
double device_gflops(const DeviceModel& d, DType dt, double flops, double bytes, double a, double b, double memory_gbs) {
  auto it = d.peak_gflops.find(dtype_name(dt));
  if (it == d.peak_gflops.end()) it = d.peak_gflops.find("fp32");
  MESHLM_CHECK(it != d.peak_gflops.end(), std::string("machine: the device has no peak rate for ") + dtype_name(dt));
  auto used = [&](double x) { return x / (std::ceil(x / d.tile) * d.tile); };  // the part of the last tile used
  const double rate = it->second * 1e9 * d.efficiency * used(a) * used(b);
  const double seconds = std::max(flops / rate, bytes / (memory_gbs * 1e9));
  return flops / seconds / 1e9;
}
}  // namespace

double MachineProfile::matmul_gflops(DType dt, bool backward, bool out_in, double N, double C, double OC) const {
  if (has_device) {  // forward: x (N, C) w (C, OC) -> (N, OC); backward: both products, twice the traffic
    const double esz = double(dtype_size(dt)), k = backward ? 2.0 : 1.0;
    return device_gflops(device, dt, k * 2 * N * C * OC, k * esz * (N * C + C * OC + N * OC), N, std::min(C, OC),
                         memory_gbs);
  }
  auto it = matmul.find(matmul_key(dt, backward, out_in));
  if (it == matmul.end()) it = matmul.find(matmul_key(DType::fp32, backward, out_in));
  MESHLM_CHECK(it != matmul.end(), "machine profile: no matmul table (" + matmul_key(dt, backward, out_in) + ")");
  return interpolate<3>(it->second, {N, C, OC});
}

double MachineProfile::attention_gflops(DType dt, double T, double HS) const {
  if (has_device) {  // per (batch, head): 12 T^2 HS FLOPs forward and backward, T^2 x passes elements
    const double esz = double(dtype_size(dt));
    return device_gflops(device, dt, 12 * T * T * HS, (device.score_passes * T * T + 8 * T * HS) * esz, T, HS, memory_gbs);
  }
  auto it = attention.find(dtype_name(dt));
  if (it == attention.end()) it = attention.find("fp32");
  MESHLM_CHECK(it != attention.end(), "machine profile: no attention table");
  return interpolate<2>(it->second, {T, HS});
}

double MachineProfile::collective_seconds(const std::string& what, int group, double bytes, int stride) const {
  if (group <= 1 || bytes <= 0) return 0;
  if (ranks_per_node > 0 && int64_t(group - 1) * stride >= ranks_per_node) {
    // Across nodes: a ring over the NICs of the group's ranks in each node, the bus bandwidth
    // k x one NIC's for k of them per node; the per-rank traffic of a ring: 2 (g-1)/g of the data
    // for an all-reduce, (g-1)/g for an all-gather or a reduce-scatter, all of it for a send.
    const double per_node = std::max(1, std::min(group, ranks_per_node / std::max(1, stride)));
    const double g = group, traffic = what == "all_reduce" ? 2 * (g - 1) / g : what == "send_recv" ? 1.0 : (g - 1) / g;
    const double steps = what == "send_recv" ? 1.0 : std::ceil(std::log2(g)) * (what == "all_reduce" ? 2 : 1);
    return nic.latency_s * steps + bytes * traffic / (per_node * nic.bytes_per_s);
  }
  auto it = collectives.find(what);
  MESHLM_CHECK(it != collectives.end() && !it->second.empty(), "machine profile: no " + what + " measurement");
  auto g = it->second.upper_bound(group);  // the largest measured group <= group (else the smallest)
  if (g != it->second.begin()) --g;
  // a ring's per-rank traffic grows as (g - 1) / g: scale from the measured group size
  const double scale = (double(group - 1) / group) / (double(g->first - 1) / g->first);
  return g->second.latency_s * double(group) / double(g->first) + bytes * scale / g->second.bytes_per_s;
}

nlohmann::json MachineProfile::to_json() const {
  nlohmann::json j = {{"threads_per_rank", threads_per_rank}, {"memory_gbs", memory_gbs}, {"adamw_ns", adamw_ns},
                      {"crossentropy_ns", crossentropy_ns}, {"matmul_call_s", matmul_call_s},
                      {"kernel_call_s", kernel_call_s}, {"micro_batch_s", micro_batch_s}, {"block_s", block_s},
                      {"step_overhead_s", step_overhead_s}};
  for (const auto& [key, rows] : matmul) j["matmul"][key] = rows;
  for (const auto& [dt, rows] : attention) j["attention"][dt] = rows;
  for (const auto& [what, groups] : collectives)
    for (const auto& [g, c] : groups) j["collectives"][what][std::to_string(g)] = {c.latency_s, c.bytes_per_s};
  return j;
}

MachineProfile MachineProfile::from_json(const nlohmann::json& j, int ranks) {
  MachineProfile p;
  p.ranks = ranks;
  p.threads_per_rank = j.value("threads_per_rank", 1);
  p.memory_gbs = j.value("memory_gbs", 10.0);
  p.adamw_ns = j.value("adamw_ns", 2.0);
  p.matmul_call_s = j.value("matmul_call_s", 0.0);
  p.kernel_call_s = j.value("kernel_call_s", 0.0);
  p.micro_batch_s = j.value("micro_batch_s", 0.0);
  p.block_s = j.value("block_s", 0.0);
  p.step_overhead_s = j.value("step_overhead_s", 0.0);
  for (const auto& [key, rows] : j.at("matmul").items()) p.matmul[key] = rows.get<std::vector<std::array<double, 4>>>();
  if (j.contains("crossentropy_ns")) p.crossentropy_ns = j["crossentropy_ns"].get<std::map<std::string, double>>();
  for (const auto& [dt, rows] : j.at("attention").items())
    p.attention[dt] = rows.get<std::vector<std::array<double, 3>>>();
  if (j.contains("collectives"))
    for (const auto& [what, groups] : j["collectives"].items())
      for (const auto& [g, c] : groups.items()) p.collectives[what][std::stoi(g)] = {c.at(0).get<double>(), c.at(1).get<double>()};
  return p;
}

MachineProfile calibrate_machine(Backend& be, Mesh& mesh, std::ostream& log, bool quick) {
  Communicator& world = mesh.world();
  MachineProfile p;
  p.ranks = world.size();
  p.threads_per_rank = omp_get_max_threads();
  log << "calibrating " << p.ranks << " rank(s) x " << p.threads_per_rank << " thread(s), all at once\n";
  for (DType dt : {DType::fp32, DType::bf16}) {
    if (dt != DType::fp32 && !be.supports(Op::gemm, dt)) continue;
    calibrate_matmul(be, world, dt, p, log, quick);
    p.attention[dtype_name(dt)] = calibrate_attention(be, world, dt);
    p.crossentropy_ns[dtype_name(dt)] = calibrate_crossentropy(be, world, dt);
  }
  {  // memory: accumulate reads two buffers and writes one, 64 MB each (quick: 16 MB)
    const int64_t n = quick ? 4 << 20 : 16 << 20;
    Tensor a({n}, DType::fp32, be), b({n}, DType::fp32, be);
    const double s = timed(world, 5, [&] { be.accumulate(DType::fp32, a.data(), b.data(), n); });
    p.memory_gbs = 3.0 * double(n) * 4 / s / 1e9;
  }
  {  // the fixed cost of a call: a Linear of 8 x 16 -> 16, a layernorm of 64 rows of 64
    Tensor a({4096}, DType::fp32, be), b({4096}, DType::fp32, be), c({4096}, DType::fp32, be);
    Tensor st({64}, DType::fp32, be), st2({64}, DType::fp32, be);
    const int calls = 500;
    p.matmul_call_s = timed(world, 3, [&] {
                        for (int i = 0; i < calls; i++)
                          be.matmul_forward(DType::fp32, c.data(), a.data(), b.data(), nullptr, 8, 16, 16, WeightLayout::in_out);
                      }) / calls;
    p.kernel_call_s = timed(world, 3, [&] {
                        for (int i = 0; i < calls; i++)
                          be.layernorm_forward(DType::fp32, c.data(), st.data(), st2.data(), a.data(), b.data(), b.data(), 64, 64);
                      }) / calls;
  }
  {  // AdamW over 8M fp32 elements (quick: 1M)
    const int64_t n = quick ? 1 << 20 : 8 << 20;
    Tensor w({n}, DType::fp32, be), g({n}, DType::fp32, be), m({n}, DType::fp32, be), v({n}, DType::fp32, be);
    const double s = timed(world, 3, [&] { be.adamw_update(DType::fp32, w.data(), g.data(), m.data(), v.data(), n, AdamWArgs{}); });
    p.adamw_ns = s / double(n) * 1e9;
  }
  log << "  memory " << p.memory_gbs << " GB/s, AdamW " << p.adamw_ns << " ns/element, a call " << p.matmul_call_s * 1e6
      << " us (matmul), " << p.kernel_call_s * 1e6 << " us (other kernels)\n";
  calibrate_collectives(be, world, p, quick);
  return p;
}

MachineProfile load_machine_profile(const std::string& path, int ranks) {
  std::ifstream in(path);
  MESHLM_CHECK(in, path + ": cannot read the machine profile (make one: mpirun -np " + std::to_string(ranks) +
                       " meshlm plan --calibrate --machine " + path + ")");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    throw Error(path + ": not valid JSON");
  }
  const std::string key = std::to_string(ranks);
  MESHLM_CHECK(j.contains("profiles") && j["profiles"].contains(key),
               path + ": no profile for " + key + " rank(s) (calibrate it: mpirun -np " + key +
                   " meshlm plan --calibrate --machine " + path + ")");
  MachineProfile p = MachineProfile::from_json(j["profiles"][key], ranks);
  p.cpu = j.value("cpu", "");
  return p;
}

void save_machine_profile(const std::string& path, const MachineProfile& p) {
  nlohmann::json j = nlohmann::json::object();
  if (std::filesystem::exists(path)) {
    try {
      j = nlohmann::json::parse(std::ifstream(path));
    } catch (const nlohmann::json::exception&) {
      throw Error(path + ": exists and is not a machine profile (not valid JSON)");
    }
  }
  if (!p.cpu.empty()) j["cpu"] = p.cpu;
  j["profiles"][std::to_string(p.ranks)] = p.to_json();
  write_file_atomic(path, dump_rows(j) + "\n");
}

}  // namespace meshlm
