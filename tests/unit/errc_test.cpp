#include "pyvisor/errc.hpp"
#include "pyvisor/error.hpp"
#include "pyvisor/interpreter_state.hpp"

#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>

using pyvisor::errc;

TEST(errc, names_are_unique_and_round_trip) {
  std::set<std::string_view> seen;
  for (int i = 0; i <= static_cast<int>(errc::pool_unavailable); ++i) {
    auto code = static_cast<errc>(i);
    auto name = pyvisor::to_string(code);
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(seen.insert(name).second) << name;
    EXPECT_EQ(pyvisor::errc_from_string(name), code);
  }
  EXPECT_EQ(pyvisor::errc_from_string("no_such_code"), std::nullopt);
  EXPECT_EQ(pyvisor::to_string(errc::init_timeout), "init_timeout");
}

TEST(errc, error_to_string) {
  pyvisor::error e{errc::python_exception, "division by zero", "ZeroDivisionError", {}};
  EXPECT_EQ(e.to_string(), "python_exception: division by zero (ZeroDivisionError)");
}

TEST(errc, streams_print_names) {
  std::ostringstream os;
  os << errc::init_timeout << ' ' << pyvisor::interpreter_state::draining;
  EXPECT_EQ(os.str(), "init_timeout draining");
  pyvisor::error e{errc::python_exception, "boom", "ValueError", {"File \"<x>\", line 1"}};
  std::ostringstream es;
  es << e;
  EXPECT_EQ(es.str(), "python_exception: boom (ValueError)\n  File \"<x>\", line 1");
}
