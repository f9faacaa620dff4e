// Durations and sizes: the syntax of pyvisor/config.hpp, errors, canonical text, round trips.
#include <cstdint>

#include <gtest/gtest.h>

#include "pyvisor/config.hpp"

namespace pyvisor {
namespace {

using namespace std::chrono_literals;

std::chrono::milliseconds duration(std::string_view text) {
  auto d = parse_duration(text);
  EXPECT_TRUE(d.has_value()) << text;
  return d ? *d : std::chrono::milliseconds{-1};
}

std::string duration_error(std::string_view text) {
  auto d = parse_duration(text);
  EXPECT_FALSE(d.has_value()) << text;
  if (d)
    return {};
  EXPECT_EQ(d.error().code, errc::config_error);
  return d.error().message;
}

std::uint64_t size_of(std::string_view text) {
  auto s = parse_size(text);
  EXPECT_TRUE(s.has_value()) << text;
  return s ? *s : 0;
}

std::string size_error(std::string_view text) {
  auto s = parse_size(text);
  EXPECT_FALSE(s.has_value()) << text;
  return s ? std::string{} : s.error().message;
}

TEST(Duration, ParsesEveryUnit) {
  EXPECT_EQ(duration("250ms"), 250ms);
  EXPECT_EQ(duration("5s"), 5s);
  EXPECT_EQ(duration("1.5m"), 90s);
  EXPECT_EQ(duration("2h"), 2h);
  EXPECT_EQ(duration("0ms"), 0ms);
  EXPECT_EQ(duration("0s"), 0ms);
  EXPECT_EQ(duration("forever"), forever);
}

TEST(Duration, FractionsMustBeWholeMilliseconds) {
  EXPECT_EQ(duration("0.001s"), 1ms);
  EXPECT_EQ(duration("1.50s"), 1500ms);
  EXPECT_EQ(duration("0.5h"), 30min);
  EXPECT_EQ(duration("007s"), 7s);
  EXPECT_EQ(duration_error("1.5ms"), "invalid duration \"1.5ms\": not a whole number of milliseconds");
  EXPECT_EQ(duration_error("0.0001s"),
            "invalid duration \"0.0001s\": not a whole number of milliseconds");
}

TEST(Duration, RejectsJunk) {
  const std::string shape = ": expected a number and a unit (ms, s, m, h), like \"5s\", or \"forever\"";
  EXPECT_EQ(duration_error(""), "invalid duration \"\"" + shape);
  EXPECT_EQ(duration_error("s"), "invalid duration \"s\"" + shape);
  EXPECT_EQ(duration_error("-5s"), "invalid duration \"-5s\"" + shape);
  EXPECT_EQ(duration_error(" 5s"), "invalid duration \" 5s\"" + shape);
  EXPECT_EQ(duration_error(".5s"), "invalid duration \".5s\"" + shape);
  EXPECT_EQ(duration_error("5.s"), "invalid duration \"5.s\"" + shape);
  EXPECT_EQ(duration_error("Forever"), "invalid duration \"Forever\"" + shape);
  EXPECT_EQ(duration_error("5"), "invalid duration \"5\": missing unit (use ms, s, m or h)");
  EXPECT_EQ(duration_error("5x"), "invalid duration \"5x\": unknown unit \"x\" (use ms, s, m or h)");
  EXPECT_EQ(duration_error("5 s"), "invalid duration \"5 s\": unknown unit \" s\" (use ms, s, m or h)");
  EXPECT_EQ(duration_error("5s "), "invalid duration \"5s \": unknown unit \"s \" (use ms, s, m or h)");
  EXPECT_EQ(duration_error("1e3s"), "invalid duration \"1e3s\": unknown unit \"e3s\" (use ms, s, m or h)");
  EXPECT_EQ(duration_error("5S"), "invalid duration \"5S\": unknown unit \"S\" (use ms, s, m or h)");
}

TEST(Duration, Overflow) {
  // The largest is just below pyvisor::forever (2^63 - 1 ms, about 2562047788015 h).
  EXPECT_EQ(duration("2562047788015h"), std::chrono::milliseconds{2562047788015LL * 3600000});
  EXPECT_EQ(duration("9223372036854775806ms"), std::chrono::milliseconds{INT64_MAX - 1});
  const std::string large = " is too large (use \"forever\" for no bound)";
  EXPECT_EQ(duration_error("2562047788016h"), "duration \"2562047788016h\"" + large);
  EXPECT_EQ(duration_error("9223372036854775807ms"), "duration \"9223372036854775807ms\"" + large);
  EXPECT_EQ(duration_error("99999999999999999999999999999999999999h"),
            "duration \"99999999999999999999999999999999999999h\"" + large);
}

TEST(Duration, CanonicalText) {
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(5s), "5s");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(2min), "2m");
  EXPECT_EQ(format_duration(2h), "2h");
  EXPECT_EQ(format_duration(0ms), "0ms");
  EXPECT_EQ(format_duration(forever), "forever");
  EXPECT_EQ(format_duration(-5ms), "-5ms");
}

TEST(Duration, FormatRoundTrips) {
  std::uint64_t x = 88172645463325252ULL;  // xorshift: many values, deterministic
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    auto v = std::chrono::milliseconds{static_cast<std::int64_t>(x >> (i % 60 + 2))};
    ASSERT_EQ(duration(format_duration(v)), v) << v.count();
  }
  for (auto v : {0ms, 1ms, 999ms, 1000ms, 60000ms, 3600000ms, forever,
                 std::chrono::milliseconds{INT64_MAX - 1}})
    EXPECT_EQ(duration(format_duration(v)), v) << v.count();
}

TEST(Size, ParsesEveryUnit) {
  EXPECT_EQ(size_of("10B"), 10u);
  EXPECT_EQ(size_of("1024"), 1024u);
  EXPECT_EQ(size_of("0"), 0u);
  EXPECT_EQ(size_of("1KiB"), 1024u);
  EXPECT_EQ(size_of("512MiB"), 536870912u);
  EXPECT_EQ(size_of("2GiB"), 2147483648u);
  EXPECT_EQ(size_of("1TiB"), 1099511627776u);
  EXPECT_EQ(size_of("1KB"), 1000u);
  EXPECT_EQ(size_of("1MB"), 1000000u);
  EXPECT_EQ(size_of("1GB"), 1000000000u);
  EXPECT_EQ(size_of("3TB"), 3000000000000u);
  EXPECT_EQ(size_of("1.5KiB"), 1536u);
  EXPECT_EQ(size_of("0.5GB"), 500000000u);
}

TEST(Size, RejectsJunkAndOverflow) {
  const std::string shape = ": expected a number of bytes, or a number and a unit (B, KiB, MiB, "
                            "GiB, TiB, KB, MB, GB, TB), like \"512MiB\"";
  EXPECT_EQ(size_error(""), "invalid size \"\"" + shape);
  EXPECT_EQ(size_error("MiB"), "invalid size \"MiB\"" + shape);
  EXPECT_EQ(size_error("-1MiB"), "invalid size \"-1MiB\"" + shape);
  const std::string units = " (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)";
  EXPECT_EQ(size_error("5mb"), "invalid size \"5mb\": unknown unit \"mb\"" + units);
  EXPECT_EQ(size_error("1 GiB"), "invalid size \"1 GiB\": unknown unit \" GiB\"" + units);
  EXPECT_EQ(size_error("1EiB"), "invalid size \"1EiB\": unknown unit \"EiB\"" + units);
  EXPECT_EQ(size_error("1.5B"), "invalid size \"1.5B\": not a whole number of bytes");
  EXPECT_EQ(size_error("0.1KiB"), "invalid size \"0.1KiB\": not a whole number of bytes");
  EXPECT_EQ(size_of("18446744073709551615"), UINT64_MAX);
  const std::string large = " is too large (at most 16EiB - 1 byte)";
  EXPECT_EQ(size_error("18446744073709551616"), "size \"18446744073709551616\"" + large);
  EXPECT_EQ(size_error("16777216TiB"), "size \"16777216TiB\"" + large);
  EXPECT_EQ(size_error("99999999999999999999999999999999999999999TB"),
            "size \"99999999999999999999999999999999999999999TB\"" + large);
}

TEST(Size, CanonicalText) {
  EXPECT_EQ(format_size(0), "0B");
  EXPECT_EQ(format_size(10), "10B");
  EXPECT_EQ(format_size(1024), "1KiB");
  EXPECT_EQ(format_size(1536), "1536B");
  EXPECT_EQ(format_size(536870912), "512MiB");
  EXPECT_EQ(format_size(std::uint64_t{8} << 20), "8MiB");
  EXPECT_EQ(format_size(1099511627776u * 3), "3TiB");
  EXPECT_EQ(format_size(1000), "1KB");
  EXPECT_EQ(format_size(1000000000), "1GB");
  EXPECT_EQ(format_size(1500000), "1500KB");
  EXPECT_EQ(format_size(UINT64_MAX), "18446744073709551615B");
}

TEST(Size, FormatRoundTrips) {
  std::uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::uint64_t v = (i % 3 == 0) ? (x >> (i % 64)) << (i % 40) : x >> (i % 64);
    ASSERT_EQ(size_of(format_size(v)), v) << v;
  }
}

} // namespace
} // namespace pyvisor
