#include "data/manifest.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/checksum.h"
#include "core/error.h"

namespace meshlm {

namespace fs = std::filesystem;

DataIdentity verify_data_dir(const std::string& dir) {
  DataIdentity id;
  id.dir = dir;
  const fs::path path = fs::path(dir) / "manifest.json";
  if (!fs::exists(path)) return id;
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(std::ifstream(path));
  } catch (const nlohmann::json::exception&) {
    throw Error(path.string() + ": not valid JSON");
  }
  MESHLM_CHECK(m.is_object() && m.contains("shards") && m["shards"].is_array(),
               path.string() + ": no \"shards\" list");
  id.has_manifest = true;
  if (m.contains("vocab_size") && m["vocab_size"].is_number_integer()) id.vocab_size = m["vocab_size"].get<int64_t>();
  for (const nlohmann::json& s : m["shards"]) {
    MESHLM_CHECK(s.is_object() && s.contains("file") && s["file"].is_string() && s.contains("bytes") &&
                     s["bytes"].is_number_unsigned() && s.contains("checksum") && s["checksum"].is_string(),
                 path.string() + ": a shard entry lacks file, bytes or checksum: " + s.dump());
    const fs::path f = fs::path(dir) / s["file"].get<std::string>();
    MESHLM_CHECK(fs::is_regular_file(f), f.string() + ": missing (listed in manifest.json)");
    size_t size = 0;
    const std::string sum = checksum_hex(checksum_file(f.string(), &size));
    MESHLM_CHECK(size == s["bytes"].get<size_t>(), f.string() + ": " + std::to_string(size) + " bytes, manifest.json says " +
                                                       std::to_string(s["bytes"].get<size_t>()) + " (truncated or replaced?)");
    MESHLM_CHECK(sum == s["checksum"].get<std::string>(),
                 f.string() + ": checksum differs from manifest.json (the shard was modified or corrupted)");
  }
  const std::string list = m["shards"].dump();
  id.fingerprint = sha256_hex(list.data(), list.size());
  return id;
}

int64_t manifest_vocab_size(const std::string& dir) {
  std::ifstream in(std::filesystem::path(dir) / "manifest.json");
  if (!in) return 0;
  try {
    const nlohmann::json m = nlohmann::json::parse(in);
    return m.contains("vocab_size") && m["vocab_size"].is_number_integer() ? m["vocab_size"].get<int64_t>() : 0;
  } catch (const nlohmann::json::exception&) {
    return 0;  // verify_data_dir names the problem
  }
}

}  // namespace meshlm
