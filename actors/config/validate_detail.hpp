#pragma once

// The rule helpers of validate() (validate.cpp, validate_tree.cpp): one wording per kind of
// rule, problems with paths and no positions.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "config/config_detail.hpp"

namespace pyvisor::config_detail {

struct rule_checker {
  problem_sink& out;

  /// "must be at least MIN, got V"
  void at_least(const std::string& path, std::uint64_t value, std::uint64_t min);
  /// "must be positive, got 0ms" (forever is positive)
  void positive(const std::string& path, std::chrono::milliseconds d);
  /// "must not be negative, got -5ms"
  void not_negative(const std::string& path, std::chrono::milliseconds d);
  /// "must be an absolute path, got "x"" (empty passes)
  void absolute(const std::string& path, const std::string& p);
  /// "must not be empty"
  void not_empty(const std::string& path, const std::string& s);
  /// base/cap/jitter/reset_after of the backoff table at `path`
  void backoff(const std::string& path, const backoff_policy& b);
  /// intensity and period of a supervisor table at `path`
  void supervision(const std::string& path, std::optional<int> intensity,
                   std::optional<std::chrono::milliseconds> period);
};

/// Ranges and values of every section (validate.cpp).
void check_settings(rule_checker& c, const runtime_spec& spec);
/// Names, references, duplicates, children and cycles (validate_tree.cpp).
void check_tree(rule_checker& c, const runtime_spec& spec);

} // namespace pyvisor::config_detail
