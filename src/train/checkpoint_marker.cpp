#include "train/checkpoint_marker.h"

#include <cstdint>
#include <type_traits>

#include "core/error.h"

namespace meshlm {

using nlohmann::json;

namespace {

// A field as T; a missing key or a wrong type is an Error naming the file and the key, never
// the JSON library's own message.
template <class T>
T field(const json& j, const std::string& key, const std::string& file) {
  MESHLM_CHECK(j.is_object() && j.contains(key), file + ": \"" + key + "\" is missing");
  const json& v = j[key];
  if constexpr (std::is_same_v<T, std::string>) {
    MESHLM_CHECK(v.is_string(), file + ": \"" + key + "\" must be a string, not " + v.dump());
  } else {
    MESHLM_CHECK(v.is_number_integer() && (std::is_signed_v<T> || v.is_number_unsigned()),
                 file + ": \"" + key + "\" must be a non-negative integer, not " + v.dump());
    if constexpr (std::is_signed_v<T>)
      MESHLM_CHECK(v.get<int64_t>() >= 0, file + ": \"" + key + "\" must be a non-negative integer, not " + v.dump());
  }
  return v.get<T>();
}

json parse_object(const std::string& text, const std::string& name, const char* what) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception&) {
    throw Error(name + ": " + what);
  }
  MESHLM_CHECK(j.is_object(), name + ": " + what);
  return j;
}

int format_of(const json& j, const std::string& name, int max_format) {
  const int f = j.contains("format_version") ? int(field<int64_t>(j, "format_version", name)) : 1;
  MESHLM_CHECK(f >= 1 && f <= max_format, name + ": checkpoint format " + std::to_string(f) +
                                              " (written by a newer meshlm?); this build reads formats 1 to " +
                                              std::to_string(max_format));
  return f;
}

}  // namespace

CheckpointMarker parse_checkpoint_marker(const std::string& text, const std::string& name, int max_format) {
  const json m = parse_object(text, name, "corrupt completion marker");
  CheckpointMarker marker;
  marker.format = format_of(m, name, max_format);
  marker.files = m.contains("files") ? m["files"] : json();
  // The weights are model.safetensors (whole) or part.<r>-of-<W>.safetensors files (parts).
  bool weights = marker.files.is_object() && marker.files.contains("model.safetensors");
  if (marker.files.is_object())
    for (auto it = marker.files.begin(); it != marker.files.end() && !weights; ++it) weights = it.key().rfind("part.", 0) == 0;
  MESHLM_CHECK(weights && marker.files.contains("trainer.json"),
               name + ": marker does not list the weights (model.safetensors or part.* files) and trainer.json");
  for (auto it = marker.files.begin(); it != marker.files.end(); ++it) {
    const std::string entry = name + " (" + it.key() + ")";
    MESHLM_CHECK(it.key().find('/') == std::string::npos && it.key() != "." && it.key() != "..",
                 name + ": \"" + it.key() + "\" is not a file name of the directory");
    field<uint64_t>(*it, "bytes", entry);
    field<std::string>(*it, marker.checksum_key(), entry);
  }
  return marker;
}

json parse_trainer_json(const std::string& text, const std::string& name, int max_format) {
  const json t = parse_object(text, name, "not valid JSON");
  MESHLM_CHECK(t.contains("format_version"), name + ": \"format_version\" is missing");
  format_of(t, name, max_format);
  field<int64_t>(t, "step", name);
  for (const char* k : {"loader", "rng", "config"})
    MESHLM_CHECK(t.contains(k) && t[k].is_object(), name + ": \"" + k + "\" must be an object");
  field<int64_t>(t["loader"], "sequences", name + " (loader)");
  field<uint64_t>(t["rng"], "seed", name + " (rng)");
  field<uint64_t>(t["rng"], "counter", name + " (rng)");
  if (t.contains("precision")) MESHLM_CHECK(t["precision"].is_object(), name + ": \"precision\" must be an object");
  if (t.contains("data")) MESHLM_CHECK(t["data"].is_object(), name + ": \"data\" must be an object");
  return t;
}

}  // namespace meshlm
