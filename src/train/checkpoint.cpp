#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/checksum.h"
#include "core/files.h"
#include "core/rng.h"
#include "train/checkpoint_marker.h"
#include "train/checkpoint_parts.h"
#include "train/config.h"
#include "train/hf_export.h"
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

// The model a checkpoint's config describes, when it holds every model key (a trainer's does).
std::optional<ModelConfig> model_of(const json& config) {
  TrainConfig cfg;
  for (const auto& k : config_keys())
    if (is_model_key(k.key) && !config.contains(k.key)) return std::nullopt;
  try {
    apply_json(cfg, config, "config");
    cfg.model().validate();
  } catch (const Error&) {
    return std::nullopt;
  }
  return cfg.model();
}

}  // namespace

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  MESHLM_CHECK(in, p.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& s) { write_file_atomic(p.string(), s); }

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

// Every file of a checkpoint directory but COMPLETE, sorted: what COMPLETE covers.
std::vector<std::string> checkpoint_files(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n != "COMPLETE") names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

namespace {

void write_checkpoint(const std::string& dir, const CheckpointTensors& t, const TrainerState& st, const json& config,
                      const std::string& tokenizer_file, Communicator* group) {
  const fs::path final_dir(dir);
  const fs::path tmp = final_dir.string() + ".tmp";
  const int64_t P = t.table->total();
  const bool sharded = t.m && (t.begin != 0 || t.end != P);
  MESHLM_CHECK(!sharded || group, "save_checkpoint: a slice of the optimizer state needs its group");
  const bool lead = !group || group->rank() == 0;
  if (lead) {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
  }
  if (sharded) {  // every rank writes its own slice of the moments, with its global range
    group->barrier();  // the directory exists
    const std::map<std::string, std::string> range = {
        {"begin", std::to_string(t.begin)}, {"end", std::to_string(t.end)}, {"total", std::to_string(P)}};
    const fs::path f = tmp / shard_file_name(group->rank(), group->size());
    write_safetensors(f.string(), {{"exp_avg", {t.end - t.begin}, t.m}, {"exp_avg_sq", {t.end - t.begin}, t.v}},
                      range);
    fsync_path(f.string());
    group->barrier();  // every slice is on disk
    if (!lead) return;
  }

  std::vector<SafeTensorRef> weights;
  for (const auto& e : t.table->entries())  // hf_shape: the first V rows of wte
    weights.push_back({e.name, e.hf_shape, t.params + e.offset});
  write_safetensors((tmp / "model.safetensors").string(), weights, {{"format", "pt"}});

  if (t.m && !sharded) {
    std::vector<SafeTensorRef> moments;
    for (const auto& e : t.table->entries()) {
      moments.push_back({"exp_avg/" + e.name, e.shape, t.m + e.offset});
      moments.push_back({"exp_avg_sq/" + e.name, e.shape, t.v + e.offset});
    }
    write_safetensors((tmp / "optimizer.safetensors").string(), moments);
  }

  write_text(tmp / "trainer.json", trainer_json(st, config).dump(2) + "\n");
  // Hugging Face's config.json beside the HF-named weights: from_pretrained(dir) reads the
  // checkpoint itself (the tokenizer comes with `meshlm export`).
  if (const std::optional<ModelConfig> m = model_of(config)) write_text(tmp / "config.json", hf_config(*m).dump(2) + "\n");

  copy_tokenizer(tokenizer_file, tmp);
  seal_checkpoint(tmp.string(), dir);
}

}  // namespace

json trainer_json(const TrainerState& st, const json& config) {
  json trainer = {{"format_version", kCheckpointFormat},
                  {"step", st.step},
                  {"loader", {{"sequences", st.loader.sequences}, {"epoch", st.epoch}}},
                  {"rng", {{"seed", st.rng.seed}, {"counter", st.rng.counter}}},
                  {"config", config}};
  if (!st.precision.is_null()) trainer["precision"] = st.precision;
  if (!st.data.is_null()) trainer["data"] = st.data;
  return trainer;
}

void copy_tokenizer(const std::string& tokenizer_file, const std::string& dir) {
  if (tokenizer_file.empty()) return;
  std::error_code ec;
  fs::copy_file(tokenizer_file, fs::path(dir) / tokenizer_file_name(tokenizer_file), ec);
  MESHLM_CHECK(!ec, tokenizer_file + ": cannot copy into the checkpoint (" + ec.message() + ")");
}

void seal_checkpoint(const std::string& tmp_dir, const std::string& dir, const json& known) {
  const fs::path tmp(tmp_dir), final_dir(dir);
  // COMPLETE covers every file of the directory (verify refuses any it does not list).
  json files = json::object();
  for (const std::string& name : checkpoint_files(tmp)) {
    if (known.contains(name)) {  // hashed (and fsync'ed) by the rank that wrote it
      files[name] = known[name];
      continue;
    }
    size_t size = 0;
    const std::string sum = sha256_file((tmp / name).string(), &size);
    files[name] = {{"bytes", size}, {"sha256", sum}};
    fsync_path((tmp / name).string());
  }
  write_text(tmp / "COMPLETE", json{{"format_version", kCheckpointFormat}, {"files", files}}.dump(2) + "\n");
  fsync_path(tmp.string());
  // Into place: an older directory of the same name moves aside first, so a kill leaves one
  // complete checkpoint under either name.
  const fs::path old = final_dir.string() + ".old";
  fs::remove_all(old);
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(tmp, final_dir);
  fs::remove_all(old);
  fsync_path(final_dir.has_parent_path() ? final_dir.parent_path().string() : ".");
}

// A failed save (a full disk, an I/O error) leaves no partial directory behind: the previous
// checkpoints are untouched, the error names the file.


void save_checkpoint(const std::string& dir, const CheckpointTensors& t, const TrainerState& st, const json& config,
                     const std::string& tokenizer_file, Communicator* group) {
  try {
    write_checkpoint(dir, t, st, config, tokenizer_file, group);
  } catch (...) {
    std::error_code ec;
    if (!group || group->rank() == 0) fs::remove_all(dir + ".tmp", ec);
    throw;
  }
}

void save_checkpoint(const std::string& dir, const Model& model, AdamW* opt, const TrainerState& st,
                     const json& config, const std::string& tokenizer_file) {
  MESHLM_CHECK(model.plan().mesh.tp == 1 && model.stage().first && model.stage().last,
               "save_checkpoint: a whole model (tp 1, one stage); train/checkpointer.h gathers other layouts");
  MESHLM_CHECK(!opt || (opt->begin() == 0 && opt->end() == model.table().total()),
               "save_checkpoint: the optimizer of the whole model");
  const std::vector<float> params = to_host(model.backend(), model.params());
  std::vector<float> m, v;
  if (opt) {
    m = to_host(opt->backend(), opt->m());
    v = to_host(opt->backend(), opt->v());
  }
  const CheckpointTensors t{&model.table(), params.data(), opt ? m.data() : nullptr, opt ? v.data() : nullptr, 0,
                            opt ? model.table().total() : 0};
  save_checkpoint(dir, t, st, config, tokenizer_file);
}

namespace {

// One entry of COMPLETE (checked by parse_checkpoint_marker) against the file on disk.
void verify_listed_file(const fs::path& p, const json& entry, const CheckpointMarker& marker) {
  MESHLM_CHECK(fs::is_regular_file(p), p.string() + ": missing (listed in COMPLETE)");
  const size_t bytes = entry["bytes"].get<size_t>();
  size_t size = 0;
  const std::string sum =
      marker.format >= 2 ? sha256_file(p.string(), &size) : checksum_hex(checksum_file(p.string(), &size));
  MESHLM_CHECK(size == bytes, p.string() + ": " + std::to_string(size) + " bytes, expected " + std::to_string(bytes) +
                                  " (truncated?)");
  MESHLM_CHECK(sum == entry[marker.checksum_key()].get<std::string>(),
               p.string() + ": checksum mismatch (the file was modified or corrupted)");
}

}  // namespace

json verify_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  MESHLM_CHECK(fs::is_directory(d), dir + ": no such checkpoint directory");
  MESHLM_CHECK(fs::exists(d / "COMPLETE"),
               dir + ": incomplete checkpoint (no COMPLETE marker; the save was interrupted?)");
  const CheckpointMarker marker =
      parse_checkpoint_marker(read_file(d / "COMPLETE"), (d / "COMPLETE").string(), kCheckpointFormat);
  for (const std::string& name : checkpoint_files(d))  // COMPLETE covers the whole directory
    MESHLM_CHECK(marker.files.contains(name), (d / name).string() + ": not covered by COMPLETE (added after the save?); "
                                                                    "remove it or restore the checkpoint");
  for (auto it = marker.files.begin(); it != marker.files.end(); ++it) verify_listed_file(d / it.key(), *it, marker);
  return parse_trainer_json(read_file(d / "trainer.json"), (d / "trainer.json").string(), kCheckpointFormat);
}

BpeTokenizer checkpoint_tokenizer(const std::string& dir, const std::string& config_tokenizer) {
  const std::string own = tokenizer_file_in(dir);
  if (!own.empty()) return load_tokenizer(own);
  MESHLM_CHECK(!config_tokenizer.empty(),
               dir + ": the checkpoint does not name its tokenizer (its data had no manifest.json); "
                     "pass --tokenizer");
  return load_tokenizer(config_tokenizer);
}

void check_entry(const SafeTensorsFile& f, const std::string& name, const Shape& shape);


namespace {

// The moments of checkpoint `d`, whole tensor by whole tensor, from optimizer.safetensors
// (by name) or from the slice files of a ZeRO-1 run at tp 1, pp 1 (ranges of the whole
// table's flat buffers).
class MomentReader {
 public:
  MomentReader(const fs::path& d, const ParamTable& whole) : whole_(whole) {
    if (fs::exists(d / "optimizer.safetensors")) {
      file_ = std::make_unique<SafeTensorsFile>((d / "optimizer.safetensors").string());
      return;
    }
    int64_t covered = 0;
    for (const std::string& name : checkpoint_files(d)) {
      if (name.rfind("optimizer.rank", 0) != 0) continue;
      Slice s{std::make_unique<SafeTensorsFile>((d / name).string()), 0, 0};
      int64_t total = 0;
      try {
        s.begin = std::stoll(s.file->metadata().at("begin"));
        s.end = std::stoll(s.file->metadata().at("end"));
        total = std::stoll(s.file->metadata().at("total"));
      } catch (const std::exception&) {
        throw Error((d / name).string() + ": no begin/end/total metadata");
      }
      MESHLM_CHECK(total == whole.total() && 0 <= s.begin && s.begin <= s.end && s.end <= total,
                   (d / name).string() + ": range [" + std::to_string(s.begin) + ", " + std::to_string(s.end) +
                       ") of " + std::to_string(total) + " does not fit this model (" + std::to_string(whole.total()) +
                       " parameters)");
      covered += s.end - s.begin;
      slices_.push_back(std::move(s));
    }
    MESHLM_CHECK(!slices_.empty(), d.string() + ": has no optimizer state, cannot resume training from it");
    MESHLM_CHECK(covered == whole.total(), d.string() + ": the optimizer slices cover " + std::to_string(covered) +
                                               " of " + std::to_string(whole.total()) + " parameters");
  }
  // Every tensor's moments are there, with its shape (without reading them).
  void check() const {
    for (const ParamEntry& e : whole_.entries()) {
      if (!file_) break;
      for (const char* kind : {"exp_avg/", "exp_avg_sq/"}) check_entry(*file_, kind + e.name, e.shape);
    }
    for (const Slice& s : slices_)
      for (const char* kind : {"exp_avg", "exp_avg_sq"}) check_entry(*s.file, kind, {s.end - s.begin});
  }
  // The whole tensor `name`'s moments (its global shape) into m and v.
  void read(const std::string& name, std::vector<float>& m, std::vector<float>& v) const {
    const ParamEntry& e = whole_.at(name);
    m.resize(size_t(e.numel()));
    v.resize(size_t(e.numel()));
    if (file_) {
      file_->read_f32("exp_avg/" + name, e.shape, m.data());
      file_->read_f32("exp_avg_sq/" + name, e.shape, v.data());
      return;
    }
    for (const Slice& s : slices_) {
      const int64_t lo = std::max(s.begin, e.offset), hi = std::min(s.end, e.offset + e.numel());
      if (lo >= hi) continue;
      std::vector<float> sm(size_t(s.end - s.begin)), sv(size_t(s.end - s.begin));
      s.file->read_f32("exp_avg", {s.end - s.begin}, sm.data());
      s.file->read_f32("exp_avg_sq", {s.end - s.begin}, sv.data());
      std::copy(sm.begin() + (lo - s.begin), sm.begin() + (hi - s.begin), m.begin() + (lo - e.offset));
      std::copy(sv.begin() + (lo - s.begin), sv.begin() + (hi - s.begin), v.begin() + (lo - e.offset));
    }
  }

 private:
  struct Slice {
    std::unique_ptr<SafeTensorsFile> file;
    int64_t begin, end;
  };
  const ParamTable& whole_;
  std::unique_ptr<SafeTensorsFile> file_;
  std::vector<Slice> slices_;
};

}  // namespace

void check_entry(const SafeTensorsFile& f, const std::string& name, const Shape& shape) {
  MESHLM_CHECK(f.has(name), f.path() + ": no tensor " + name);
  const SafeTensorsFile::Entry& e = f.entry(name);
  MESHLM_CHECK(e.dtype == "F32" && e.shape == shape, f.path() + ": " + name + " is " + e.dtype + " " +
                                                        shape_str(e.shape) + ", expected F32 " + shape_str(shape));
}

void verify_checkpoint_tensors(const std::string& dir, const ModelConfig& cfg, bool optimizer) {
  const ParamTable whole = param_table(cfg, Plan{}, 0, 0);
  const json trainer = parse_trainer_json(read_file(fs::path(dir) / "trainer.json"), dir + "/trainer.json", kCheckpointFormat);
  if (is_parts_checkpoint(trainer)) return PartsReader(dir, trainer).check(whole, optimizer);
  const SafeTensorsFile weights((fs::path(dir) / "model.safetensors").string());
  for (const ParamEntry& e : whole.entries()) check_entry(weights, e.name, e.hf_shape);
  if (optimizer) MomentReader(fs::path(dir), whole).check();
}

namespace {

// This rank's elements of a whole tensor (host, unsharded) through the entry's global index.
void take_slice(const ParamEntry& e, const std::vector<float>& whole, std::vector<float>& local) {
  local.resize(size_t(e.numel()));
  e.for_each_run([&](int64_t l, int64_t g, int64_t n) {
    std::copy(whole.begin() + g, whole.begin() + g + n, local.begin() + l);
  });
}

// Uploads the part of local (this rank's tensor e, at flat offset e.offset) inside the
// optimizer's range into its moments.
void upload_moments(const ParamEntry& e, const std::vector<float>& m, const std::vector<float>& v, AdamW& opt) {
  const int64_t lo = std::max(e.offset, opt.begin()), hi = std::min(e.offset + e.numel(), opt.end());
  if (lo >= hi) return;
  Backend& be = opt.backend();
  be.upload(opt.m().as<float>() + (lo - opt.begin()), m.data() + (lo - e.offset), size_t(hi - lo) * 4);
  be.upload(opt.v().as<float>() + (lo - opt.begin()), v.data() + (lo - e.offset), size_t(hi - lo) * 4);
}

}  // namespace

namespace {

// A parts checkpoint: of each of this rank's tensors the elements it stores (all, or its ZeRO
// shard) and of its moments the optimizer's range, read from the pieces that hold them only.
void load_parts(const std::string& dir, const json& trainer, Model& model, AdamW* opt) {
  const PartsReader parts(dir, trainer);
  parts.check(param_table(model.config(), Plan{}, 0, 0), opt != nullptr);
  const WeightResidency& r = model.residency();
  const int64_t mlo = r.shard_masters ? r.begin : 0, mhi = r.shard_masters ? r.end : model.table().total();
  std::vector<float> local, lm, lv;
  for (const ParamEntry& e : model.table().entries()) {
    local.assign(size_t(e.numel()), 0.0f);
    parts.read_local(e, mlo, mhi, "", local.data());
    model.set_master(e, local.data());
    if (!opt || e.offset + e.numel() <= opt->begin() || e.offset >= opt->end()) continue;
    lm.assign(size_t(e.numel()), 0.0f);
    lv.assign(size_t(e.numel()), 0.0f);
    parts.read_local(e, opt->begin(), opt->end(), "exp_avg/", lm.data());
    parts.read_local(e, opt->begin(), opt->end(), "exp_avg_sq/", lv.data());
    upload_moments(e, lm, lv, *opt);
  }
  model.update_compute_weights();
}

}  // namespace

json load_checkpoint(const std::string& dir, Model& model, AdamW* opt, const json* verified) {
  json trainer = verified ? *verified : verify_checkpoint(dir);
  MESHLM_CHECK(model.master_dtype() == DType::fp32, "checkpoints load into fp32 models only");
  if (is_parts_checkpoint(trainer)) {
    load_parts(dir, trainer, model, opt);
    return trainer;
  }
  const fs::path d(dir);
  const ParamTable whole = param_table(model.config(), Plan{}, 0, 0);
  SafeTensorsFile weights((d / "model.safetensors").string());
  std::unique_ptr<MomentReader> moments;
  if (opt) moments = std::make_unique<MomentReader>(d, whole);
  if (moments) moments->check();  // every name and shape before anything is uploaded
  std::vector<float> w, local, m, v, lm, lv;
  for (const ParamEntry& e : model.table().entries()) {
    const ParamEntry& we = whole.at(e.name);
    w.assign(size_t(we.numel()), 0.0f);  // padded vocabulary rows stay zero
    weights.read_f32(e.name, we.hf_shape, w.data());
    take_slice(e, w, local);
    model.set_master(e, local.data());
    if (!moments || e.offset + e.numel() <= opt->begin() || e.offset >= opt->end()) continue;
    moments->read(e.name, m, v);
    take_slice(e, m, lm);
    take_slice(e, v, lv);
    upload_moments(e, lm, lv, *opt);
  }
  model.update_compute_weights();  // the owner re-rounds if its mode rounds otherwise
  return trainer;
}

std::vector<std::string> run_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(run_dir)) return {};
  for (const auto& e : fs::directory_iterator(run_dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.size() != 11 || name.rfind("step_", 0) != 0) continue;  // step_NNNNNN, not .tmp
    if (name.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    if (!fs::exists(e.path() / "COMPLETE")) continue;
    found.emplace_back(std::stoll(name.substr(5)), e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> dirs;
  for (auto& [step, dir] : found) dirs.push_back(dir);
  return dirs;
}

std::string resolve_checkpoint(const std::string& path) {
  MESHLM_CHECK(fs::is_directory(path), path + ": no such directory (--resume takes a checkpoint or a run directory)");
  if (fs::exists(fs::path(path) / "trainer.json") || fs::exists(fs::path(path) / "COMPLETE")) return path;
  const std::vector<std::string> all = run_checkpoints(path);
  MESHLM_CHECK(!all.empty(), path + ": a directory without complete checkpoints (no step_NNNNNN/COMPLETE); "
                                    "nothing to resume from");
  return all.back();
}

std::vector<std::string> prune_checkpoints(const std::string& run_dir, int64_t keep) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  const std::vector<std::string> all = run_checkpoints(run_dir);
  for (size_t i = 0; i + size_t(keep) < all.size(); i++) {
    std::error_code ec;
    fs::remove_all(all[i], ec);
    if (!ec) removed.push_back(all[i]);
  }
  return removed;
}

}  // namespace meshlm
