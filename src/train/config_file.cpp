#include "train/config_file.h"

#include <toml++/toml.h>

#include <sstream>

#include "core/error.h"

namespace meshlm {

std::vector<std::pair<std::string, std::string>> read_config_text(
    const std::string& text, const std::string& name,
    const std::function<std::optional<ConfigKind>(const std::string&)>& kind_of) {
  toml::table tbl;
  try {
    tbl = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << name << ":" << e.source().begin.line << ": " << e.description();
    throw Error(msg.str());
  }
  std::vector<std::pair<std::string, std::string>> out;
  std::vector<std::pair<std::string, const toml::node*>> entries;
  for (const auto& [k, node] : tbl) {
    if (const toml::table* section = node.as_table()) {
      for (const auto& [k2, node2] : *section) {
        MESHLM_CHECK(!node2.is_table(), name + ": section [" + std::string(k.str()) + "." + std::string(k2.str()) +
                                            "]: sections hold keys, not further sections");
        entries.emplace_back(std::string(k2.str()), &node2);
      }
      continue;
    }
    entries.emplace_back(std::string(k.str()), &node);
  }
  for (const auto& [key, np] : entries) {
    const toml::node& node = *np;
    const std::optional<ConfigKind> kind = kind_of(key);
    MESHLM_CHECK(kind, name + ": unknown config key '" + key + "'");
    std::string value;
    if (*kind == ConfigKind::integer && node.is_integer()) {
      value = std::to_string(node.value<int64_t>().value());
    } else if (*kind == ConfigKind::real && (node.is_floating_point() || node.is_integer())) {
      // An integer goes through int64 (toml++ refuses an inexact int -> double conversion).
      const double x = node.is_integer() ? double(*node.value<int64_t>()) : *node.value<double>();
      std::ostringstream ss;
      ss.precision(17);
      ss << x;
      value = ss.str();
    } else if (*kind == ConfigKind::text && node.is_string()) {
      value = node.value<std::string>().value();
    } else if (*kind == ConfigKind::boolean && node.is_boolean()) {
      value = *node.value<bool>() ? "1" : "0";
    } else if (*kind == ConfigKind::boolean && node.is_integer() && (*node.value<int64_t>() == 0 || *node.value<int64_t>() == 1)) {
      value = std::to_string(*node.value<int64_t>());
    } else {
      const char* want = *kind == ConfigKind::integer ? "an integer"
                         : *kind == ConfigKind::real  ? "a number"
                         : *kind == ConfigKind::text  ? "a string"
                                                      : "true or false (or 1 or 0)";
      throw Error(name + ": key '" + key + "' must be " + want);
    }
    out.emplace_back(key, value);
  }
  return out;
}

}  // namespace meshlm
