#pragma once

// Helpers of the config tests: load TOML text as "t.toml" with relative paths resolved against
// the test data directory, and the problems as "file:line:col: path: message" lines.

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "pyvisor/config.hpp"

namespace pyvisor::config_test {

inline const std::string data_dir = PYVISOR_CONFIG_TEST_DATA;

inline config_result load(std::string_view text) {
  return load_config_string(text, "t.toml", data_dir);
}

inline std::vector<std::string> lines(const std::vector<config_problem>& problems) {
  std::vector<std::string> out;
  for (const auto& p : problems)
    out.push_back(p.to_string());
  return out;
}

/// The problems of loading `text`, one line each.
inline std::vector<std::string> problems(std::string_view text) {
  return lines(load(text).problems);
}

/// The spec of `text`, which must load without problems.
inline runtime_spec spec_of(std::string_view text) {
  auto r = load(text);
  EXPECT_TRUE(r.ok()) << ::testing::PrintToString(lines(r.problems));
  return r.spec ? *r.spec : runtime_spec{};
}

using strings = std::vector<std::string>;

/// A spec that sets every key of the schema to a non-default value (roundtrip_test.cpp).
runtime_spec full_spec();

} // namespace pyvisor::config_test
