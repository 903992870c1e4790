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

enum class ConfigKind { integer, real, text, boolean };  // boolean: stored as 0/1

// kind_of(key): the key's kind, or nullopt for an unknown key (an error naming it). `name`
// labels messages (the path). Throws meshlm::Error "<name>:<line>: ..." on a syntax error.
// Keys may sit at the top level or in sections ([model], [optimizer], ...: any name, one level);
// a boolean key takes true/false or 0/1; a value's text is what the flag would take ("1"/"0").
std::vector<std::pair<std::string, std::string>> read_config_text(
    const std::string& text, const std::string& name,
    const std::function<std::optional<ConfigKind>(const std::string&)>& kind_of);

}  // namespace meshlm
