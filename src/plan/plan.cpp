#include "plan/plan.h"

#include <fnmatch.h>

#include <algorithm>

#include "core/error.h"

namespace meshlm {

const char* sharding_name(Sharding s) {
  return s == Sharding::replicated ? "replicated" : s == Sharding::columns ? "columns" : "rows";
}

Recompute recompute_from_name(const std::string& name) {
  if (name == "none") return Recompute::none;
  if (name == "selective") return Recompute::selective;
  if (name == "full") return Recompute::full;
  throw Error("recompute must be none, selective or full, not '" + name + "'");
}

const char* recompute_name(Recompute r) {
  return r == Recompute::none ? "none" : r == Recompute::selective ? "selective" : "full";
}

const char* grad_sync_name(GradSyncKind k) {
  switch (k) {
    case GradSyncKind::none: return "none";
    case GradSyncKind::buckets: return "buckets";
    case GradSyncKind::zero1: return "zero1";
    case GradSyncKind::zero2: return "zero2";
    case GradSyncKind::zero3: return "zero3";
  }
  return "?";
}

std::vector<int64_t> pipeline_split(int64_t n_layer, int pp, const std::string& spec) {
  MESHLM_CHECK(pp >= 1, "pp must be >= 1");
  std::vector<int64_t> split;
  if (spec.empty()) {
    MESHLM_CHECK(n_layer % pp == 0, "pipeline: " + std::to_string(n_layer) + " layers do not split evenly into " +
                                        std::to_string(pp) + " stages; give the split with --pp-layers (e.g. " +
                                        std::to_string(n_layer / pp + 1) + ",...)");
    return std::vector<int64_t>(size_t(pp), n_layer / pp);
  }
  size_t pos = 0;
  while (pos <= spec.size()) {
    const size_t comma = std::min(spec.find(',', pos), spec.size());
    const std::string item = spec.substr(pos, comma - pos);
    int64_t n = 0;
    size_t used = 0;
    try {
      n = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MESHLM_CHECK(used == item.size() && used > 0 && n >= 1,
                 "--pp-layers '" + spec + "': '" + item + "' is not a positive layer count");
    split.push_back(n);
    pos = comma + 1;
  }
  int64_t sum = 0;
  for (int64_t n : split) sum += n;
  MESHLM_CHECK(int(split.size()) == pp, "--pp-layers '" + spec + "' names " + std::to_string(split.size()) +
                                            " stages but pp is " + std::to_string(pp));
  MESHLM_CHECK(sum == n_layer, "--pp-layers '" + spec + "' holds " + std::to_string(sum) +
                                   " layers but the model has " + std::to_string(n_layer));
  return split;
}

std::vector<int64_t> balanced_pipeline_split(int64_t L, int pp, double block, double head) {
  MESHLM_CHECK(pp >= 1 && pp <= L, "--pp-layers balanced: " + std::to_string(pp) + " stages need at least as many layers (the model has " +
                                       std::to_string(L) + ")");
  // best[s][i]: the smallest possible cost of the most expensive of stages 0..s holding
  // layers [0, i); from[s][i]: where stage s starts in that split.
  const double inf = 1e300;
  std::vector<std::vector<double>> best(size_t(pp), std::vector<double>(size_t(L + 1), inf));
  std::vector<std::vector<int64_t>> from(size_t(pp), std::vector<int64_t>(size_t(L + 1), 0));
  for (int64_t i = 1; i <= L; i++) best[0][size_t(i)] = double(i) * block + (pp == 1 ? head : 0);
  for (int s = 1; s < pp; s++)
    for (int64_t i = s + 1; i <= L; i++)
      for (int64_t j = s; j < i; j++) {  // stage s holds [j, i)
        const double c = std::max(best[size_t(s - 1)][size_t(j)], double(i - j) * block + (s == pp - 1 ? head : 0));
        if (c < best[size_t(s)][size_t(i)]) {
          best[size_t(s)][size_t(i)] = c;
          from[size_t(s)][size_t(i)] = j;
        }
      }
  std::vector<int64_t> split(static_cast<size_t>(pp));
  int64_t end = L;
  for (int s = pp - 1; s > 0; s--) {
    split[size_t(s)] = end - from[size_t(s)][size_t(end)];
    end = from[size_t(s)][size_t(end)];
  }
  split[0] = end;
  return split;
}

StageLayers stage_layers(const std::vector<int64_t>& split, int stage, int v) {
  const int n = int(split.size());
  MESHLM_CHECK(v >= 1 && n % v == 0 && stage >= 0 && stage < n / v, "stage_layers: no such stage");
  const int pp = n / v;
  std::vector<int64_t> start(size_t(n) + 1, 0);
  for (int i = 0; i < n; i++) start[size_t(i) + 1] = start[size_t(i)] + split[size_t(i)];
  StageLayers s;
  for (int c = 0; c < v; c++) s.chunks.push_back({start[size_t(c * pp + stage)], split[size_t(c * pp + stage)]});
  s.first = stage == 0;
  s.last = stage == pp - 1;
  return s;
}

std::vector<LayerRange> StageLayers::resolved(int64_t n_layer) const {
  return chunks.empty() ? std::vector<LayerRange>{{0, n_layer}} : chunks;
}

int StageLayers::chunk_of(int64_t layer) const {
  if (chunks.empty()) return 0;
  for (size_t c = 0; c < chunks.size(); c++)
    if (layer >= chunks[c].first && layer < chunks[c].first + chunks[c].n) return int(c);
  return -1;
}

std::vector<int64_t> StageLayers::layers(int64_t n_layer) const {
  std::vector<int64_t> v;
  for (const LayerRange& r : resolved(n_layer))
    for (int64_t l = r.first; l < r.first + r.n; l++) v.push_back(l);
  return v;
}

ShardRule Plan::shard_of(const std::string& name) const {
  if (mesh.tp > 1)
    for (const ShardRule& r : sharding)
      if (::fnmatch(r.pattern.c_str(), name.c_str(), 0) == 0) return r;
  return {name, Sharding::replicated, 1};
}

StageLayers Plan::stage(int pp_rank) const {
  if (pp_split.empty()) {
    MESHLM_CHECK(pp_rank == 0, "plan: no pipeline split, so no stage " + std::to_string(pp_rank));
    return {};
  }
  return stage_layers(pp_split, pp_rank, pp_virtual);
}

void Plan::validate() const {
  MESHLM_CHECK(mesh.dp >= 1 && mesh.tp >= 1 && mesh.pp >= 1, "dp, tp and pp must be >= 1");
  MESHLM_CHECK(!sequence_parallel || mesh.tp > 1, "sequence parallelism needs tensor parallelism (tp > 1)");
  MESHLM_CHECK(pp_virtual >= 1, "pp_virtual must be >= 1");
  MESHLM_CHECK(pp_split.empty() ? mesh.pp == 1 && pp_virtual == 1 : int(pp_split.size()) == mesh.pp * pp_virtual,
               "plan: the pipeline split names " + std::to_string(pp_split.size()) + " stages but pp x pp_virtual is " +
                   std::to_string(mesh.pp * pp_virtual));
  MESHLM_CHECK((pp_schedule == PipelineSchedule::interleaved) == (pp_virtual > 1),
               (pp_virtual > 1 ? "several model chunks per pipeline rank (pp_virtual " + std::to_string(pp_virtual) +
                                     ") need the interleaved schedule (--pp-schedule interleaved)"
                               : std::string("the interleaved schedule needs pp_virtual >= 2 model chunks per rank")));
  MESHLM_CHECK(pp_virtual == 1 || mesh.pp > 1, "interleaved 1F1B needs a pipeline (pp > 1)");
  MESHLM_CHECK((grad_sync == GradSyncKind::none) == (mesh.dp == 1),
               std::string("plan: gradient synchronisation '") + grad_sync_name(grad_sync) + "' with dp " +
                   std::to_string(mesh.dp));
  MESHLM_CHECK(grad_reduce == DType::fp32 || grad_reduce == DType::bf16, "gradients reduce in fp32 or bf16");
  MESHLM_CHECK(bucket_mb > 0, "bucket_mb must be positive");
  MESHLM_CHECK(fsdp_unit >= 1, "fsdp_unit must be at least one layer");
  MESHLM_CHECK(grad_sync != GradSyncKind::zero3 || mesh.pp == 1,
               "ZeRO-3 with pipeline parallelism (pp " + std::to_string(mesh.pp) +
                   ") is not supported: use --zero 2 (or 1) with a pipeline");
  MESHLM_CHECK(grad_sync != GradSyncKind::zero2 || mesh.pp == 1 || hold_whole_grads,
               "ZeRO-2 with a pipeline holds whole gradients until the last micro-batch (--zero-accumulate whole)");
}

int Plan::zero_stage() const {
  return grad_sync == GradSyncKind::zero1 ? 1 : grad_sync == GradSyncKind::zero2 ? 2 : grad_sync == GradSyncKind::zero3 ? 3 : 0;
}

std::string Plan::describe() const {
  std::string s = mesh.describe() + ", " + grad_sync_name(grad_sync);
  if (sequence_parallel) s += ", sequence parallel";
  s += std::string(", recompute ") + recompute_name(recompute);
  if (mesh.pp > 1) s += std::string(", pipeline ") + pipeline_schedule_name(pp_schedule);
  if (pp_virtual > 1) s += " x" + std::to_string(pp_virtual) + " chunks";
  return s;
}

}  // namespace meshlm

namespace meshlm {

namespace {

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); i++)
    if (i == s.size() || s[i] == sep) {
      out.push_back(trimmed(s.substr(start, i - start)));
      start = i + 1;
    }
  return out;
}

// A selector's parts: which blocks ("layers.i", "layers.i-j", none: all) and which role.
struct Selector {
  bool head = false, any_layer = true;
  int64_t lo = 0, hi = 0;  // as written (negative: from the end)
  std::string role;        // "", "attn", "mlp"
};

int64_t parse_index(const std::string& s, const std::string& sel) {
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error("precision plan: '" + sel + "': '" + s + "' is not a layer index");
}

Selector parse_selector(const std::string& sel) {
  Selector s;
  if (sel == "*") return s;
  if (sel == "head") {
    s.head = true;
    return s;
  }
  std::vector<std::string> parts = split_on(sel, '.');
  if (parts.back() == "attn" || parts.back() == "mlp") {
    s.role = parts.back();
    parts.pop_back();
  }
  if (parts.empty()) return s;
  if (parts.size() != 2 || parts[0] != "layers")
    throw Error("precision plan: unknown selector '" + sel +
                "' (expected *, head, attn, mlp, layers.i, layers.i-j, layers.i.attn, layers.i.mlp)");
  s.any_layer = false;
  const size_t dash = parts[1].find('-', 1);  // not the sign of the first index
  s.lo = parse_index(parts[1].substr(0, dash), sel);
  s.hi = dash == std::string::npos ? s.lo : parse_index(parts[1].substr(dash + 1), sel);
  return s;
}

bool matches(const Selector& s, int64_t layer, const std::string& role, int64_t n_layer) {
  if (layer < 0 || s.head) return layer < 0 && s.head;
  if (!s.role.empty() && s.role != role) return false;
  if (s.any_layer) return true;
  const int64_t lo = s.lo < 0 ? n_layer + s.lo : s.lo, hi = s.hi < 0 ? n_layer + s.hi : s.hi;
  return layer >= lo && layer <= hi;
}

}  // namespace

PrecisionPlan PrecisionPlan::parse(const std::string& text) {
  PrecisionPlan p;
  if (trimmed(text).empty()) return p;
  for (const std::string& rule : split_on(text, ';')) {
    if (rule.empty()) continue;
    const size_t colon = rule.find(':');
    MESHLM_CHECK(colon != std::string::npos, "precision plan: rule '" + rule + "' has no ':' (selectors: format)");
    PrecisionRule r;
    r.format = trimmed(rule.substr(colon + 1));
    MESHLM_CHECK(!r.format.empty(), "precision plan: rule '" + rule + "' names no format");
    for (const std::string& sel : split_on(rule.substr(0, colon), ',')) {
      MESHLM_CHECK(!sel.empty(), "precision plan: rule '" + rule + "' has an empty selector");
      parse_selector(sel);  // throws on a bad one
      r.selectors.push_back(sel);
    }
    p.rules.push_back(r);
  }
  return p;
}

std::string PrecisionPlan::format_of(int64_t layer, const std::string& role, int64_t n_layer) const {
  for (const PrecisionRule& r : rules)
    for (const std::string& sel : r.selectors)
      if (matches(parse_selector(sel), layer, role, n_layer)) return r.format;
  return "";
}

std::string PrecisionPlan::describe() const {
  std::string s;
  for (const PrecisionRule& r : rules) {
    if (!s.empty()) s += "; ";
    for (size_t i = 0; i < r.selectors.size(); i++) s += (i ? "," : "") + r.selectors[i];
    s += ": " + r.format;
  }
  return s;
}

}  // namespace meshlm
