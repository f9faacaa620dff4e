// Problems, their paths and the shared wording of messages (config_detail.hpp).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "config/config_detail.hpp"

namespace pyvisor {

std::string config_problem::to_string() const {
  std::string out;
  if (line > 0) {
    out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  } else if (!file.empty()) {
    out = file + ": ";
  }
  if (!path.empty())
    out += path + ": ";
  return out + message;
}

namespace config_detail {

std::string parent_of(std::string_view path) {
  std::string p{path};
  // Drop the last segment: "[i]", a quoted key or a bare key.
  if (p.empty()) {
  } else if (p.back() == ']') {
    p.erase(p.rfind('['));
  } else if (p.back() == '"') {
    auto open = p.rfind('"', p.size() - 2);
    p.erase(open == std::string::npos || open == 0 ? 0 : open - 1);
  } else {
    auto dot = p.rfind('.');
    p.erase(dot == std::string::npos ? 0 : dot);
  }
  return p;
}

std::pair<int, int> source_map::find(std::string_view path) const {
  for (std::string p{path}; !p.empty(); p = parent_of(p))
    if (auto it = positions_.find(p); it != positions_.end())
      return it->second;
  return {0, 0};
}

bool valid_name(std::string_view name) {
  if (name.empty())
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\b': out += "\\b"; break;
    case '\t': out += "\\t"; break;
    case '\n': out += "\\n"; break;
    case '\f': out += "\\f"; break;
    case '\r': out += "\\r"; break;
    default:
      if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(c));
        out += buf;
      } else {
        out += ch;
      }
    }
  }
  return out + "\"";
}

std::string toml_key(std::string_view key) {
  return valid_name(key) ? std::string{key} : toml_string(key);
}

std::string join(std::string_view parent, std::string_view key) {
  if (parent.empty())
    return toml_key(key);
  return std::string{parent} + "." + toml_key(key);
}

std::string index(std::string_view parent, std::size_t i) {
  return std::string{parent} + "[" + std::to_string(i) + "]";
}

namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

} // namespace

std::optional<std::string> suggest(std::string_view word,
                                   const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = 3;
  for (const auto& c : candidates) {
    auto d = edit_distance(word, c);
    if (d < best_distance && d < word.size() && d < c.size()) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  auto s = suggest(word, candidates);
  return s ? " (did you mean '" + *s + "'?)" : std::string{};
}

std::string bad_choice(std::string_view value, const std::vector<std::string>& choices) {
  std::string list;
  for (const auto& c : choices)
    list += (list.empty() ? "" : ", ") + c;
  return "invalid value " + toml_string(value) + " (expected one of: " + list + ")";
}

// ---- enum names -----------------------------------------------------------------------

const std::vector<std::string>& strategy_names() {
  static const std::vector<std::string> v{"one_for_one", "one_for_all", "rest_for_one"};
  return v;
}
const std::vector<std::string>& restart_names() {
  static const std::vector<std::string> v{"permanent", "transient", "temporary"};
  return v;
}
const std::vector<std::string>& dispatch_names() {
  static const std::vector<std::string> v{"least_loaded", "round_robin", "key_affinity"};
  return v;
}
const std::vector<std::string>& spawn_names() {
  static const std::vector<std::string> v{"cold", "fork_server"};
  return v;
}
const std::vector<std::string>& sandbox_names() {
  static const std::vector<std::string> v{"none", "bwrap"};
  return v;
}
const std::vector<std::string>& log_level_names() {
  static const std::vector<std::string> v{"debug", "info", "warning", "error"};
  return v;
}
const std::vector<std::string>& log_format_names() {
  static const std::vector<std::string> v{"text", "json"};
  return v;
}

std::string_view name_of(restart_strategy s) { return strategy_names().at(static_cast<std::size_t>(s)); }
std::string_view name_of(restart_type r) { return restart_names().at(static_cast<std::size_t>(r)); }
std::string_view name_of(dispatch_policy d) { return dispatch_names().at(static_cast<std::size_t>(d)); }
std::string_view name_of(spawn_mode m) { return spawn_names().at(static_cast<std::size_t>(m)); }
std::string_view name_of(sandbox_kind k) { return sandbox_names().at(static_cast<std::size_t>(k)); }

std::optional<std::size_t> choice_index(std::string_view value,
                                        const std::vector<std::string>& names) {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == value)
      return i;
  return std::nullopt;
}

} // namespace config_detail
} // namespace pyvisor
