#pragma once

// Internals of the config layer shared by the loader, the validator and the writer (not
// installed). Problem paths are the TOML keys, dotted ("pools.web.busy.high_water"), with
// array elements as "[i]" ("supervisors.app.children[1]"), for specs built in C++ too, so that
// the loader can give every problem of validate() the position of the key it names.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pyvisor/config.hpp"

namespace pyvisor::config_detail {

/// Where problems go: a path and a message, positions attached later (or by the reader).
struct problem_sink {
  std::vector<config_problem> list;

  void add(std::string path, std::string message, int line = 0, int column = 0) {
    config_problem p;
    p.path = std::move(path);
    p.message = std::move(message);
    p.line = line;
    p.column = column;
    list.push_back(std::move(p));
  }
};

/// The position of every key (and array element) the loader read, by problem path.
class source_map {
public:
  void record(const std::string& path, int line, int column) {
    positions_.emplace(path, std::make_pair(line, column));
  }
  /// The position of `path`, else of its nearest recorded parent; {0, 0} when none.
  std::pair<int, int> find(std::string_view path) const;

private:
  std::unordered_map<std::string, std::pair<int, int>> positions_;
};

/// Every rule of validate(), writing problems (paths, no positions) to `out`.
void validate_into(const runtime_spec& spec, problem_sink& out);

// ---- paths and messages -----------------------------------------------------------------

/// A key as written in a TOML path: bare when it is [A-Za-z0-9_-]+, else a quoted string.
std::string toml_key(std::string_view key);
/// `parent.key` (the key quoted when needed); `key` alone when parent is empty.
std::string join(std::string_view parent, std::string_view key);
/// The path without its last segment ("a.b[2]" -> "a.b", "a.b" -> "a", "a" -> "").
std::string parent_of(std::string_view path);
/// `parent[i]`.
std::string index(std::string_view parent, std::size_t i);
/// A TOML basic string with escapes: "a\"b".
std::string toml_string(std::string_view s);
/// The candidate closest to `word` (edit distance at most 2 and below the word's length).
std::optional<std::string> suggest(std::string_view word, const std::vector<std::string>& candidates);
/// " (did you mean 'x'?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);
/// `invalid value "x" (expected one of: a, b, c)`.
std::string bad_choice(std::string_view value, const std::vector<std::string>& choices);
/// True for names of tenants, pools and supervisors: [A-Za-z0-9_-]+.
bool valid_name(std::string_view name);

// ---- enum names (the TOML spelling) ------------------------------------------------------

const std::vector<std::string>& strategy_names();
const std::vector<std::string>& restart_names();
const std::vector<std::string>& dispatch_names();
const std::vector<std::string>& spawn_names();
const std::vector<std::string>& sandbox_names();
const std::vector<std::string>& log_level_names();
const std::vector<std::string>& log_format_names();

std::string_view name_of(restart_strategy s);
std::string_view name_of(restart_type r);
std::string_view name_of(dispatch_policy d);
std::string_view name_of(spawn_mode m);
std::string_view name_of(sandbox_kind k);

/// The index of `value` in `names`, if there.
std::optional<std::size_t> choice_index(std::string_view value, const std::vector<std::string>& names);

} // namespace pyvisor::config_detail
