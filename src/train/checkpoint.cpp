#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/checksum.h"
#include "core/rng.h"
#include "train/safetensors.h"

namespace meshlm {

namespace fs = std::filesystem;
using nlohmann::json;

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%06lld", (long long)step);
  return buf;
}

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  MESHLM_CHECK(in, p.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
  out.close();
  MESHLM_CHECK(out, p.string() + ": write failed");
}

void fsync_path(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// A host copy of an fp32 backend tensor (files are written from host memory).
std::vector<float> to_host(Backend& be, const Tensor& t) {
  MESHLM_CHECK(t.dtype() == DType::fp32, "checkpoints hold fp32 models only");
  std::vector<float> host(size_t(t.numel()));
  be.download(host.data(), t.data(), t.nbytes());
  return host;
}

}  // namespace

namespace {

std::string shard_file_name(int rank, int size) {
  return "optimizer.rank" + std::to_string(rank) + "-of-" + std::to_string(size) + ".safetensors";
}

// The files of a checkpoint that COMPLETE lists, in a fixed order.
std::vector<std::string> checkpoint_files(const fs::path& dir) {
  std::vector<std::string> names;
  for (const char* name : {"model.safetensors", "optimizer.safetensors", "trainer.json", "tokenizer.json"})
    if (fs::exists(dir / name)) names.push_back(name);
  std::vector<std::string> shards;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("optimizer.rank", 0) == 0) shards.push_back(n);
  }
  std::sort(shards.begin(), shards.end());
  names.insert(names.end(), shards.begin(), shards.end());
  return names;
}

}  // namespace

void save_checkpoint(const std::string& dir, const Model& model, AdamW* opt, const TrainerState& st,
                     const json& config, const std::string& tokenizer_file, Communicator* group) {
  const fs::path final_dir(dir);
  const fs::path tmp = final_dir.string() + ".tmp";
  const int64_t P = model.table().total();
  const bool sharded = opt && (opt->begin() != 0 || opt->end() != P);
  MESHLM_CHECK(!sharded || group, "save_checkpoint: a sharded optimizer needs its group");
  const bool lead = !group || group->rank() == 0;
  if (lead) {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
  }
  if (sharded) {  // every rank writes its own slice of the moments, with its global range
    group->barrier();  // the directory exists
    const std::map<std::string, std::string> range = {
        {"begin", std::to_string(opt->begin())}, {"end", std::to_string(opt->end())}, {"total", std::to_string(P)}};
    const fs::path f = tmp / shard_file_name(group->rank(), group->size());
    const std::vector<float> m = to_host(opt->backend(), opt->m()), v = to_host(opt->backend(), opt->v());
    write_safetensors(f.string(),
                      {{"exp_avg", {opt->end() - opt->begin()}, m.data()},
                       {"exp_avg_sq", {opt->end() - opt->begin()}, v.data()}},
                      range);
    fsync_path(f);
    group->barrier();  // every slice is on disk
    if (!lead) return;
  }

  const std::vector<float> params = to_host(model.backend(), model.params());
  std::vector<SafeTensorRef> weights;
  for (const auto& e : model.table().entries())  // hf_shape: the first V rows of wte
    weights.push_back({e.name, e.hf_shape, params.data() + e.offset});
  write_safetensors((tmp / "model.safetensors").string(), weights, {{"format", "pt"}});

  if (opt && !sharded) {
    const std::vector<float> m = to_host(opt->backend(), opt->m()), v = to_host(opt->backend(), opt->v());
    std::vector<SafeTensorRef> moments;
    for (const auto& e : model.table().entries()) {
      moments.push_back({"exp_avg/" + e.name, e.shape, m.data() + e.offset});
      moments.push_back({"exp_avg_sq/" + e.name, e.shape, v.data() + e.offset});
    }
    write_safetensors((tmp / "optimizer.safetensors").string(), moments);
  }

  json trainer = {{"format_version", 1},
                  {"step", st.step},
                  {"loader", {{"sequences", st.loader.sequences}, {"epoch", st.epoch}}},
                  {"rng", {{"seed", st.rng.seed}, {"counter", st.rng.counter}}},
                  {"config", config}};
  if (!st.precision.is_null()) trainer["precision"] = st.precision;
  write_text(tmp / "trainer.json", trainer.dump(2) + "\n");

  if (!tokenizer_file.empty()) fs::copy_file(tokenizer_file, tmp / "tokenizer.json");

  json files = json::object();
  for (const std::string& name : checkpoint_files(tmp)) {
    size_t size = 0;
    const uint64_t sum = checksum_file((tmp / name).string(), &size);
    files[name] = {{"bytes", size}, {"checksum", checksum_hex(sum)}};
    fsync_path(tmp / name);
  }
  write_text(tmp / "COMPLETE", json{{"files", files}}.dump(2) + "\n");
  fsync_path(tmp / "COMPLETE");
  fsync_path(tmp);
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  if (final_dir.has_parent_path()) fsync_path(final_dir.parent_path());
}

json verify_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  MESHLM_CHECK(fs::is_directory(d), dir + ": no such checkpoint directory");
  MESHLM_CHECK(fs::exists(d / "COMPLETE"),
               dir + ": incomplete checkpoint (no COMPLETE marker; the save was interrupted?)");
  json marker;
  try {
    marker = json::parse(read_file(d / "COMPLETE"));
  } catch (const json::exception&) {
    throw Error(dir + "/COMPLETE: corrupt completion marker");
  }
  MESHLM_CHECK(marker.contains("files") && marker["files"].contains("model.safetensors") &&
                   marker["files"].contains("trainer.json"),
               dir + "/COMPLETE: marker does not list model.safetensors and trainer.json");
  for (auto it = marker["files"].begin(); it != marker["files"].end(); ++it) {
    const fs::path p = d / it.key();
    MESHLM_CHECK(fs::exists(p), p.string() + ": missing (listed in COMPLETE)");
    size_t size = 0;
    const uint64_t sum = checksum_file(p.string(), &size);
    MESHLM_CHECK(size == (*it)["bytes"].get<size_t>(),
                 p.string() + ": " + std::to_string(size) + " bytes, expected " +
                     std::to_string((*it)["bytes"].get<size_t>()) + " (truncated?)");
    MESHLM_CHECK(checksum_hex(sum) == (*it)["checksum"].get<std::string>(),
                 p.string() + ": checksum mismatch (the file was modified or corrupted)");
  }
  try {
    return json::parse(read_file(d / "trainer.json"));
  } catch (const json::exception&) {
    throw Error(dir + "/trainer.json: not valid JSON");
  }
}

BpeTokenizer checkpoint_tokenizer(const std::string& dir, const std::string& config_tokenizer) {
  const fs::path own = fs::path(dir) / "tokenizer.json";
  if (fs::exists(own)) return BpeTokenizer::load_json(own.string());
  MESHLM_CHECK(!config_tokenizer.empty(),
               dir + ": the checkpoint does not name its tokenizer (its data had no manifest.json); "
                     "pass --tokenizer");
  return load_tokenizer(config_tokenizer);
}

namespace {

// Uploads the part of host src's global range [src_begin, src_end) that falls inside the
// optimizer's own range [opt.begin, opt.end) into its moments.
void copy_overlap(const float* m_src, const float* v_src, int64_t src_begin, int64_t src_end, AdamW& opt) {
  const int64_t lo = std::max(src_begin, opt.begin()), hi = std::min(src_end, opt.end());
  if (lo >= hi) return;
  Backend& be = opt.backend();
  be.upload(opt.m().as<float>() + (lo - opt.begin()), m_src + (lo - src_begin), size_t(hi - lo) * 4);
  be.upload(opt.v().as<float>() + (lo - opt.begin()), v_src + (lo - src_begin), size_t(hi - lo) * 4);
}

// The moments for the optimizer's range, from whichever layout wrote them: one file by
// parameter name, or per-rank slices with their global ranges (ZeRO-1).
void load_optimizer_state(const fs::path& d, const ParamTable& table, AdamW& opt) {
  std::vector<std::string> shards;
  for (const std::string& n : checkpoint_files(d))
    if (n.rfind("optimizer.rank", 0) == 0) shards.push_back(n);
  if (fs::exists(d / "optimizer.safetensors")) {
    SafeTensorsFile moments((d / "optimizer.safetensors").string());
    std::vector<float> m, v;
    for (const auto& e : table.entries()) {
      if (e.offset + e.numel() <= opt.begin() || e.offset >= opt.end()) continue;
      m.resize(size_t(e.numel()));
      v.resize(size_t(e.numel()));
      moments.read_f32("exp_avg/" + e.name, e.shape, m.data());
      moments.read_f32("exp_avg_sq/" + e.name, e.shape, v.data());
      copy_overlap(m.data(), v.data(), e.offset, e.offset + e.numel(), opt);
    }
    return;
  }
  MESHLM_CHECK(!shards.empty(), d.string() + ": has no optimizer state, cannot resume training from it");
  int64_t covered = 0;
  for (const std::string& name : shards) {
    SafeTensorsFile f((d / name).string());
    int64_t b = 0, e = 0, total = 0;
    try {
      b = std::stoll(f.metadata().at("begin"));
      e = std::stoll(f.metadata().at("end"));
      total = std::stoll(f.metadata().at("total"));
    } catch (const std::exception&) {
      throw Error((d / name).string() + ": no begin/end/total metadata");
    }
    MESHLM_CHECK(total == table.total() && 0 <= b && b <= e && e <= total,
                 (d / name).string() + ": range [" + std::to_string(b) + ", " + std::to_string(e) +
                     ") of " + std::to_string(total) + " does not fit this model (" +
                     std::to_string(table.total()) + " parameters)");
    std::vector<float> m(size_t(e - b)), v(size_t(e - b));
    f.read_f32("exp_avg", {e - b}, m.data());
    f.read_f32("exp_avg_sq", {e - b}, v.data());
    copy_overlap(m.data(), v.data(), b, e, opt);
    covered += e - b;
  }
  MESHLM_CHECK(covered == table.total(), d.string() + ": the optimizer slices cover " + std::to_string(covered) +
                                             " of " + std::to_string(table.total()) + " parameters");
}

}  // namespace

json load_checkpoint(const std::string& dir, Model& model, AdamW* opt) {
  json trainer = verify_checkpoint(dir);
  MESHLM_CHECK(model.params().dtype() == DType::fp32, "checkpoints load into fp32 models only");
  const fs::path d(dir);
  SafeTensorsFile weights((d / "model.safetensors").string());
  std::vector<float> params(size_t(model.params().numel()), 0.0f);  // padded vocabulary rows stay zero
  for (const auto& e : model.table().entries()) weights.read_f32(e.name, e.hf_shape, params.data() + e.offset);
  model.backend().upload(model.params().data(), params.data(), params.size() * 4);
  model.update_compute_weights();  // the owner re-rounds if its mode rounds otherwise
  if (opt) load_optimizer_state(d, model.table(), *opt);
  return trainer;
}

}  // namespace meshlm
