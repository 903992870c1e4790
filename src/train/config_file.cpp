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
  for (const auto& [k, node] : tbl) {
    const std::string key(k.str());
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
    } else {
      const char* want = *kind == ConfigKind::integer ? "an integer" : *kind == ConfigKind::real ? "a number" : "a string";
      throw Error(name + ": key '" + key + "' must be " + want);
    }
    out.emplace_back(key, value);
  }
  return out;
}

}  // namespace meshlm
