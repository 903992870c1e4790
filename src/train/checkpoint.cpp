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

const float* fp32_data(const Tensor& t) {
  MESHLM_CHECK(t.dtype() == DType::fp32, "checkpoints hold fp32 models only");
  return t.as<float>();
}

}  // namespace

void save_checkpoint(const std::string& dir, const Gpt& model, AdamW* opt, const TrainerState& st,
                     const json& config, const std::string& tokenizer_file) {
  const fs::path final_dir(dir);
  const fs::path tmp = final_dir.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  const float* params = fp32_data(model.params());
  std::vector<SafeTensorRef> weights;
  for (const auto& e : model.table().entries())  // hf_shape: the first V rows of wte
    weights.push_back({e.name, e.hf_shape, params + e.offset});
  write_safetensors((tmp / "model.safetensors").string(), weights, {{"format", "pt"}});

  if (opt) {
    std::vector<SafeTensorRef> moments;
    for (const auto& e : model.table().entries()) {
      moments.push_back({"exp_avg/" + e.name, e.shape, fp32_data(opt->m()) + e.offset});
      moments.push_back({"exp_avg_sq/" + e.name, e.shape, fp32_data(opt->v()) + e.offset});
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
  for (const char* name : {"model.safetensors", "optimizer.safetensors", "trainer.json", "tokenizer.json"}) {
    if (!fs::exists(tmp / name)) continue;
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

json load_checkpoint(const std::string& dir, Gpt& model, AdamW* opt) {
  json trainer = verify_checkpoint(dir);
  MESHLM_CHECK(model.params().dtype() == DType::fp32, "checkpoints load into fp32 models only");
  const fs::path d(dir);
  SafeTensorsFile weights((d / "model.safetensors").string());
  float* params = model.params().as<float>();
  model.params().zero();  // padded vocabulary rows stay zero
  for (const auto& e : model.table().entries()) weights.read_f32(e.name, e.hf_shape, params + e.offset);
  model.update_compute_weights();  // the owner re-rounds if its mode rounds otherwise
  if (opt) {
    MESHLM_CHECK(fs::exists(d / "optimizer.safetensors"),
                 dir + ": has no optimizer.safetensors, cannot resume training from it");
    SafeTensorsFile moments((d / "optimizer.safetensors").string());
    for (const auto& e : model.table().entries()) {
      moments.read_f32("exp_avg/" + e.name, e.shape, opt->m().as<float>() + e.offset);
      moments.read_f32("exp_avg_sq/" + e.name, e.shape, opt->v().as<float>() + e.offset);
    }
  }
  return trainer;
}

}  // namespace meshlm
