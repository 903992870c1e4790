// A TOML config file read into (key, value text) pairs, each value checked against the kind
// its key takes; the texts then go through the same setters as the command-line flags
// (train/config.h). Apart from the config's keys so that the fuzzer (tests/fuzz) reaches it.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace meshlm {

enum class ConfigKind { integer, real, text };

// kind_of(key): the key's kind, or nullopt for an unknown key (an error naming it). `name`
// labels messages (the path). Throws meshlm::Error "<name>:<line>: ..." on a syntax error.
std::vector<std::pair<std::string, std::string>> read_config_text(
    const std::string& text, const std::string& name,
    const std::function<std::optional<ConfigKind>(const std::string&)>& kind_of);

}  // namespace meshlm
