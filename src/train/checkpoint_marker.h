// The two small JSON files of a checkpoint that say what it is: COMPLETE (the format version
// and every file's size and checksum) and trainer.json (step, loader, random stream, config).
// Parsed and checked here, apart from the tensors, so that the fuzzer (tests/fuzz) can reach
// them: any text either parses into values of the right types or is an Error naming the file.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace meshlm {

struct CheckpointMarker {
  int format = 1;        // 1: meshlm's 64-bit checksums ("checksum"); 2: SHA-256 ("sha256")
  nlohmann::json files;  // name -> {"bytes": n, "checksum" | "sha256": hex}, each checked
  std::string checksum_key() const { return format >= 2 ? "sha256" : "checksum"; }
};

// `text` is COMPLETE's content, `name` its path (for messages); max_format: the newest this
// build reads.
CheckpointMarker parse_checkpoint_marker(const std::string& text, const std::string& name, int max_format);
// trainer.json: every field resume reads present with its type (the config's keys are checked
// when it is applied).
nlohmann::json parse_trainer_json(const std::string& text, const std::string& name, int max_format);

}  // namespace meshlm
