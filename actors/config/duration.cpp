// Durations and sizes of config files (pyvisor/config.hpp): "<number><unit>" with an optional
// decimal fraction, parsed exactly (no floating point), and their canonical text.
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include "pyvisor/config.hpp"

namespace pyvisor {
namespace {

using u128 = unsigned __int128;

struct unit {
  std::string_view name;
  std::uint64_t factor;
};

constexpr unit duration_units[] = {
  {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};

constexpr std::uint64_t KiB = 1024;
constexpr unit size_units[] = {
  {"B", 1},
  {"KiB", KiB}, {"MiB", KiB * KiB}, {"GiB", KiB * KiB * KiB}, {"TiB", KiB * KiB * KiB * KiB},
  {"KB", 1000}, {"MB", 1000'000}, {"GB", 1000'000'000}, {"TB", 1000'000'000'000}};

constexpr u128 number_cap = u128{1} << 100;  // beyond every limit, far below overflow

/// "<digits>[.<digits>]<unit>" split and read: the integer part, the fraction's digits as an
/// integer and its length, and the unit text. False when the shape is wrong.
struct number_parts {
  u128 whole = 0;
  u128 fraction = 0;
  int fraction_digits = 0;
  bool too_large = false;
  std::string_view unit;
};

bool split_number(std::string_view text, number_parts& out) {
  std::size_t i = 0;
  auto digits = [&](u128& value, int* count) {
    std::size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (value < number_cap)
        value = value * 10 + static_cast<unsigned>(text[i] - '0');
      else
        out.too_large = true;
      if (count)
        ++*count;
      ++i;
    }
    return i > start;
  };
  if (!digits(out.whole, nullptr))
    return false;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (!digits(out.fraction, &out.fraction_digits))
      return false;
  }
  out.unit = text.substr(i);
  return true;
}

/// whole.fraction * factor, if it is a whole number; nullopt when it is not.
std::optional<u128> scaled(const number_parts& p, std::uint64_t factor, bool& fractional) {
  fractional = false;
  u128 pow10 = 1;
  u128 fraction = p.fraction;
  int digits = p.fraction_digits;
  while (digits > 0 && fraction % 10 == 0) {  // "1.50" is "1.5"
    fraction /= 10;
    --digits;
  }
  if (digits > 24)
    return std::nullopt;
  for (int k = 0; k < digits; ++k)
    pow10 *= 10;
  u128 part = fraction * factor;
  if (part % pow10 != 0) {
    fractional = true;
    return std::nullopt;
  }
  return p.whole * factor + part / pow10;
}

std::string quote(std::string_view s) {
  return "\"" + std::string{s} + "\"";
}

error config_err(std::string message) {
  return make_error(errc::config_error, std::move(message));
}

} // namespace

expected<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text == "forever")
    return forever;
  const auto prefix = "invalid duration " + quote(text) + ": ";
  number_parts p;
  if (!split_number(text, p))
    return config_err(prefix + "expected a number and a unit (ms, s, m, h), like \"5s\", or "
                               "\"forever\"");
  if (p.unit.empty())
    return config_err(prefix + "missing unit (use ms, s, m or h)");
  const unit* u = nullptr;
  for (const auto& candidate : duration_units)
    if (candidate.name == p.unit)
      u = &candidate;
  if (!u)
    return config_err(prefix + "unknown unit " + quote(p.unit) + " (use ms, s, m or h)");
  if (p.too_large)
    return config_err("duration " + quote(text) + " is too large (use \"forever\" for no bound)");
  bool fractional = false;
  auto ms = scaled(p, u->factor, fractional);
  if (fractional)
    return config_err(prefix + "not a whole number of milliseconds");
  if (!ms || *ms >= static_cast<u128>(forever.count()))
    return config_err("duration " + quote(text) + " is too large (use \"forever\" for no bound)");
  return std::chrono::milliseconds{static_cast<std::int64_t>(*ms)};
}

expected<std::uint64_t> parse_size(std::string_view text) {
  const auto prefix = "invalid size " + quote(text) + ": ";
  number_parts p;
  if (!split_number(text, p))
    return config_err(prefix + "expected a number of bytes, or a number and a unit (B, KiB, "
                               "MiB, GiB, TiB, KB, MB, GB, TB), like \"512MiB\"");
  const unit* u = &size_units[0];  // a bare number is bytes
  if (!p.unit.empty()) {
    u = nullptr;
    for (const auto& candidate : size_units)
      if (candidate.name == p.unit)
        u = &candidate;
    if (!u)
      return config_err(prefix + "unknown unit " + quote(p.unit) +
                        " (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)");
  }
  if (p.too_large)
    return config_err("size " + quote(text) + " is too large (at most 16EiB - 1 byte)");
  bool fractional = false;
  auto bytes = scaled(p, u->factor, fractional);
  if (fractional)
    return config_err(prefix + "not a whole number of bytes");
  if (!bytes || *bytes > static_cast<u128>(UINT64_MAX))
    return config_err("size " + quote(text) + " is too large (at most 16EiB - 1 byte)");
  return static_cast<std::uint64_t>(*bytes);
}

std::string format_duration(std::chrono::milliseconds d) {
  if (d == forever)
    return "forever";
  auto n = d.count();
  if (n < 0)  // not valid in a config; written so that the error shows the value
    return n == INT64_MIN ? std::string{"-9223372036854775808ms"} : "-" + std::to_string(-n) + "ms";
  if (n == 0)
    return "0ms";
  for (auto it = std::rbegin(duration_units); it != std::rend(duration_units); ++it)
    if (n % static_cast<std::int64_t>(it->factor) == 0)
      return std::to_string(n / static_cast<std::int64_t>(it->factor)) + std::string{it->name};
  return std::to_string(n) + "ms";
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0)
    return "0B";
  // The largest unit that divides exactly: binary units first (memory is counted in them),
  // then decimal ones.
  for (int i = 4; i >= 1; --i)
    if (bytes % size_units[i].factor == 0)
      return std::to_string(bytes / size_units[i].factor) + std::string{size_units[i].name};
  for (int i = 8; i >= 5; --i)
    if (bytes % size_units[i].factor == 0)
      return std::to_string(bytes / size_units[i].factor) + std::string{size_units[i].name};
  return std::to_string(bytes) + "B";
}

} // namespace pyvisor
