#pragma once

// Typed reading of one TOML table (the loader's only contact with toml++ values). Every read
// names its key, which makes the key known at this place (unknown keys are reported by
// finish() with a did-you-mean among the known ones) and records its position in the source
// map. Type problems are reported here with the value's position; range rules are not: they
// are validate()'s (config_detail.hpp), which the loader runs on what was read.

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <toml++/toml.h>

#include "config/config_detail.hpp"

namespace pyvisor::config_detail {

/// Shared by every reader of one load.
struct load_context {
  problem_sink& problems;
  source_map& positions;
  std::string base_dir;  ///< absolute; relative paths in the file resolve against it
};

/// "string", "integer", "float", ... as messages name them.
std::string_view type_name(const toml::node& n);

class table_reader {
public:
  table_reader(load_context& ctx, const toml::table& table, std::string path);

  const std::string& path() const noexcept { return path_; }
  load_context& context() noexcept { return ctx_; }
  /// The path of `key` in this table.
  std::string path_of(std::string_view key) const { return join(path_, key); }

  /// Marks `key` known; its node when present (position recorded).
  const toml::node* get(std::string_view key);
  bool has(std::string_view key) const { return table_.contains(key); }

  void string(std::string_view key, std::string& out);
  void boolean(std::string_view key, bool& out);
  void number(std::string_view key, double& out);
  void duration(std::string_view key, std::chrono::milliseconds& out);
  void duration(std::string_view key, std::optional<std::chrono::milliseconds>& out);
  void strings(std::string_view key, std::vector<std::string>& out);
  void strings(std::string_view key, std::optional<std::vector<std::string>>& out);
  /// A path: resolved against the file's directory, stored absolute and normalized.
  void path(std::string_view key, std::string& out);

  /// A size: an integer (bytes) or a string like "512MiB"; with `inherit`, also the string
  /// "inherit", which leaves `out` unset.
  void size(std::string_view key, std::optional<std::uint64_t>& out, bool inherit = false);
  template <class T>
  void size(std::string_view key, T& out) {
    std::optional<std::uint64_t> v;
    size(key, v);
    if (v)
      out = fit<T>(key, *v);
  }

  /// An integer of type T (negative values rejected for unsigned T).
  template <class T>
  void integer(std::string_view key, T& out) {
    auto v = integer_value(key, std::is_unsigned_v<T>);
    if (!v)
      return;
    if constexpr (std::is_unsigned_v<T>) {
      out = fit<T>(key, static_cast<std::uint64_t>(*v));
    } else if (*v < std::numeric_limits<T>::min() || *v > std::numeric_limits<T>::max()) {
      problem_at(*table_.get(key), path_of(key),
                 "must be between " + std::to_string(std::numeric_limits<T>::min()) + " and " +
                   std::to_string(std::numeric_limits<T>::max()) + ", got " + std::to_string(*v));
    } else {
      out = static_cast<T>(*v);
    }
  }
  template <class T>
  void integer(std::string_view key, std::optional<T>& out) {
    const auto problems_before = ctx_.problems.list.size();
    T v{};
    integer(key, v);
    if (has(key) && ctx_.problems.list.size() == problems_before)
      out = v;
  }

  /// One of `names`; `out` is set to the enum with that index.
  template <class E>
  void choice(std::string_view key, E& out, const std::vector<std::string>& names) {
    if (auto i = choice_value(key, names))
      out = static_cast<E>(*i);
  }
  template <class E>
  void choice(std::string_view key, std::optional<E>& out, const std::vector<std::string>& names) {
    if (auto i = choice_value(key, names))
      out = static_cast<E>(*i);
  }

  /// A sub-table (a type problem when the key holds something else); nullopt when absent.
  std::optional<table_reader> table(std::string_view key);
  /// An array (a type problem when the key holds something else); nullptr when absent.
  const toml::array* array(std::string_view key);

  /// Reports every key of the table that no read named.
  void finish();

  /// Reports a problem at the position of `node`.
  void problem_at(const toml::node& node, const std::string& path, std::string message);

private:
  std::optional<std::int64_t> integer_value(std::string_view key, bool non_negative);
  std::optional<std::size_t> choice_value(std::string_view key, const std::vector<std::string>& names);
  void type_problem(const toml::node& node, const std::string& path, std::string_view expected);

  template <class T>
  T fit(std::string_view key, std::uint64_t v) {
    if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
      if (auto* n = table_.get(key))
        problem_at(*n, path_of(key),
                   "must be at most " + std::to_string(std::numeric_limits<T>::max()) + ", got " +
                     std::to_string(v));
      return std::numeric_limits<T>::max();
    }
    return static_cast<T>(v);
  }

  load_context& ctx_;
  const toml::table& table_;
  std::string path_;
  std::vector<std::string> known_;
};

/// Section readers (loader_*.cpp).
void read_backoff(table_reader& r, backoff_policy& out);
void read_tenant(table_reader& r, tenant_spec& out);
void read_pool(table_reader& r, pool_spec& out);

/// The entries of a table of named tables ([pools.NAME] ...) in file order.
struct named_table {
  std::string name;
  const toml::table* table;
};
std::vector<named_table> named_tables(table_reader& parent, std::string_view key);

} // namespace pyvisor::config_detail
