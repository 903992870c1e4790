#include "train/checkpoint_parts.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/checksum.h"
#include "core/error.h"
#include "core/files.h"
#include "train/config.h"

namespace meshlm {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string part_name(int rank, int world) {
  return "part." + std::to_string(rank) + "-of-" + std::to_string(world) + ".safetensors";
}

// Beside <dir>.tmp, not in it: the writers' sums of their parts while a save is under way.
fs::path sums_dir(const fs::path& tmp) { return tmp.string() + ".sums"; }

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  MESHLM_CHECK(in, p.string() + ": cannot read (a rank's part sum)");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<float> download(Backend& be, const void* src, int64_t n) {
  std::vector<float> host(static_cast<size_t>(n));
  be.download(host.data(), src, size_t(n) * 4);
  return host;
}

// This rank's file: the part of each tensor it alone holds, and its moments.
void write_part(const fs::path& file, Mesh& mesh, Model& model, AdamW& opt, bool tied_copy) {
  Backend& be = model.backend();
  const int64_t P = model.table().total(), begin = opt.begin(), end = opt.end();
  const bool whole_range = begin == 0 && end == P;
  const bool writes = !whole_range || mesh.dp_rank() == 0;  // replicas over dp: the first writes
  // the masters of [begin, end): stored whole or as exactly this shard (ZeRO-2/3)
  const std::vector<float> p = writes ? download(be, model.master_at(begin), end - begin) : std::vector<float>{};
  const std::vector<float> m = writes ? download(be, opt.m().data(), end - begin) : std::vector<float>{};
  const std::vector<float> v = writes ? download(be, opt.v().data(), end - begin) : std::vector<float>{};
  std::vector<SafeTensorRef> refs;
  json ranges = json::object();
  for (const ParamEntry& e : model.table().entries()) {
    if (!writes || !e.counted_here() || (tied_copy && e.offset < model.tied_elems())) continue;
    const int64_t lo = std::max(e.offset, begin), hi = std::min(e.offset + e.numel(), end);
    if (lo >= hi) continue;
    ranges[e.name] = {lo - e.offset, hi - e.offset};
    refs.push_back({e.name, {hi - lo}, p.data() + (lo - begin)});
    refs.push_back({"exp_avg/" + e.name, {hi - lo}, m.data() + (lo - begin)});
    refs.push_back({"exp_avg_sq/" + e.name, {hi - lo}, v.data() + (lo - begin)});
  }
  write_safetensors(file.string(), refs,
                    {{"pp_rank", std::to_string(mesh.pp_rank())}, {"tp_rank", std::to_string(mesh.tp_rank())},
                     {"ranges", ranges.dump()}});
  fsync_path(file.string());
}

}  // namespace

void save_checkpoint_parts(const std::string& dir, Mesh& mesh, Model& model, AdamW& opt, bool tied_copy,
                           const TrainerState& st, const json& config, const std::string& tokenizer_file) {
  Communicator& world = mesh.world();
  const fs::path tmp = dir + ".tmp";
  const bool lead = world.rank() == 0;
  // A failure on any rank leaves no directory that looks complete: COMPLETE comes last, after
  // a barrier every rank reaches only with its part on disk.
  if (lead) {
    fs::remove_all(tmp);
    fs::remove_all(sums_dir(tmp));
    fs::create_directories(tmp);
    fs::create_directories(sums_dir(tmp));
  }
  world.barrier();
  // Each rank hashes its own part as it is written (in parallel) and leaves the sum beside it,
  // in the shared directory, for rank 0's COMPLETE; the sums are not part of the checkpoint.
  const std::string mine = part_name(world.rank(), world.size());
  write_part(tmp / mine, mesh, model, opt, tied_copy);
  size_t bytes = 0;
  const std::string sha = sha256_file((tmp / mine).string(), &bytes);
  write_file_atomic((sums_dir(tmp) / (mine + ".sum")).string(), json{{"bytes", bytes}, {"sha256", sha}}.dump());
  world.barrier();
  if (!lead) return;
  json known = json::object();
  for (int r = 0; r < world.size(); r++) {
    const std::string name = part_name(r, world.size());
    known[name] = json::parse(read_text(sums_dir(tmp) / (name + ".sum")));
  }
  fs::remove_all(sums_dir(tmp));
  json trainer = trainer_json(st, config);
  trainer["checkpoint"] = {{"format", "parts"}, {"parts", world.size()}};
  write_file_atomic((tmp / "trainer.json").string(), trainer.dump(2) + "\n");
  copy_tokenizer(tokenizer_file, tmp.string());
  seal_checkpoint(tmp.string(), dir, known);
}

bool is_parts_checkpoint(const json& trainer) {
  return trainer.contains("checkpoint") && trainer["checkpoint"].value("format", "") == "parts";
}

struct PartsReader::Part {
  std::unique_ptr<SafeTensorsFile> file;
  int pp_rank = 0, tp_rank = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> ranges;  // tensor -> [lo, hi) of its local elements
};

PartsReader::PartsReader(const std::string& dir, const json& trainer) : dir_(dir) {
  TrainConfig cfg;
  apply_json(cfg, trainer.at("config"), dir + "/trainer.json");
  model_ = cfg.model();
  plan_ = cfg.plan();  // the saving layout
  const int n = trainer["checkpoint"].value("parts", 0);
  MESHLM_CHECK(n > 0, dir + "/trainer.json: a parts checkpoint without a part count");
  for (int r = 0; r < n; r++) {
    const fs::path f = fs::path(dir) / part_name(r, n);
    MESHLM_CHECK(fs::is_regular_file(f), f.string() + ": missing (rank " + std::to_string(r) + " of " +
                                             std::to_string(n) + "'s part of the checkpoint)");
    auto part = std::make_unique<Part>();
    part->file = std::make_unique<SafeTensorsFile>(f.string());
    try {
      const auto& meta = part->file->metadata();
      part->pp_rank = std::stoi(meta.at("pp_rank"));
      part->tp_rank = std::stoi(meta.at("tp_rank"));
      const json ranges = json::parse(meta.at("ranges"));  // kept: the loop iterates a view of it
      for (const auto& [name, lohi] : ranges.items())
        part->ranges[name] = {lohi.at(0).get<int64_t>(), lohi.at(1).get<int64_t>()};
    } catch (const std::exception&) {
      throw Error(f.string() + ": no pp_rank, tp_rank and ranges metadata (not a meshlm checkpoint part)");
    }
    parts_.push_back(std::move(part));
  }
}

PartsReader::~PartsReader() = default;

const ParamEntry& PartsReader::saved_entry(int pp_rank, int tp_rank, const std::string& name) const {
  auto it = tables_.find({pp_rank, tp_rank});
  if (it == tables_.end()) it = tables_.emplace(std::make_pair(pp_rank, tp_rank), param_table(model_, plan_, pp_rank, tp_rank)).first;
  return it->second.at(name);
}

namespace {

// A run of consecutive global indices [g, g + n) at position `at` (a local index, or an index
// into a piece), sorted by g.
struct Run {
  int64_t g, n, at;
};
// The local elements [a, b) of e as runs of the whole tensor, positions counted from `base`.
std::vector<Run> runs_of(const ParamEntry& e, int64_t a, int64_t b, int64_t base) {
  std::vector<Run> out;
  e.for_each_run([&](int64_t l, int64_t g, int64_t k) {
    const int64_t x = std::max(l, a), y = std::min(l + k, b);
    if (x < y) out.push_back({g + (x - l), y - x, x - base});
  });
  std::sort(out.begin(), out.end(), [](const Run& p, const Run& q) { return p.g < q.g; });
  return out;
}

}  // namespace

void PartsReader::read_local(const ParamEntry& e, int64_t lo, int64_t hi, const std::string& prefix,
                             float* local) const {
  const int64_t a = std::max<int64_t>(0, lo - e.offset), b = std::min(e.numel(), hi - e.offset);
  if (a >= b) return;
  const std::vector<Run> want = runs_of(e, a, b, 0);
  for (const auto& part : parts_) {
    auto r = part->ranges.find(e.name);
    if (r == part->ranges.end()) continue;
    const auto [plo, phi] = r->second;
    const std::vector<Run> have = runs_of(saved_entry(part->pp_rank, part->tp_rank, e.name), plo, phi, plo);
    for (size_t i = 0, j = 0; i < want.size() && j < have.size();) {  // the overlaps, in one sweep
      const int64_t s = std::max(want[i].g, have[j].g), t = std::min(want[i].g + want[i].n, have[j].g + have[j].n);
      if (s < t)
        part->file->read_f32_range(prefix + e.name, have[j].at + (s - have[j].g), t - s, local + want[i].at + (s - want[i].g));
      if (want[i].g + want[i].n < have[j].g + have[j].n) i++; else j++;
    }
  }
}

void PartsReader::check(const ParamTable& whole, bool moments) const {
  (void)moments;  // every piece carries its moments beside its weights
  std::map<std::string, int64_t> covered;
  for (const auto& part : parts_)
    for (const auto& [name, lohi] : part->ranges) {
      MESHLM_CHECK(whole.has(name), part->file->path() + ": tensor " + name + " is not in " + model_.describe());
      for (const char* prefix : {"", "exp_avg/", "exp_avg_sq/"})
        MESHLM_CHECK(part->file->has(prefix + name), part->file->path() + ": no tensor " + prefix + name);
      covered[name] += lohi.second - lohi.first;
    }
  for (const ParamEntry& e : whole.entries())
    MESHLM_CHECK(covered[e.name] == e.numel(), dir_ + ": the parts cover " + std::to_string(covered[e.name]) + " of " +
                                                   std::to_string(e.numel()) + " elements of " + e.name);
}

}  // namespace meshlm
