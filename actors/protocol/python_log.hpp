#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include "protocol/message.hpp"

namespace pyvisor::protocol {

/// A `logging` notification of the runner (docs/protocol.md, "Logging records"):
/// `[2, 0, "logging", {"id", "level", "level_name", "logger", "message", "created",
/// "exception"?}]`. The views point into the message (valid while it lives).
struct python_log {
  std::uint64_t request_id = 0;
  int level = 0;
  std::string_view level_name;
  std::string_view logger;
  std::string_view message;
  std::string_view exception;  ///< "" when the key is absent
  std::chrono::system_clock::time_point created{};
};

namespace detail {

inline std::string_view str_field(const msgpack::object& map, std::string_view key) noexcept {
  auto v = map_get(map, key);
  if (v == nullptr || v->type != msgpack::type::STR)
    return {};
  return {v->via.str.ptr, v->via.str.size};
}

} // namespace detail

/// Decodes a `logging` payload; nullopt when it is not a map with a string "message".
/// Fields of the wrong type are left at their defaults (forward compatibility, as for `log`).
inline std::optional<python_log> parse_python_log(const msgpack::object& payload) noexcept {
  auto message = map_get(payload, "message");
  if (message == nullptr || message->type != msgpack::type::STR)
    return std::nullopt;
  python_log r;
  r.message = {message->via.str.ptr, message->via.str.size};
  if (auto v = map_get(payload, "id"); v && v->type == msgpack::type::POSITIVE_INTEGER)
    r.request_id = v->via.u64;
  if (auto v = map_get(payload, "level")) {
    constexpr auto int_max = static_cast<std::uint64_t>(std::numeric_limits<int>::max());
    if (v->type == msgpack::type::POSITIVE_INTEGER)
      r.level = static_cast<int>(v->via.u64 > int_max ? int_max : v->via.u64);
    else if (v->type == msgpack::type::NEGATIVE_INTEGER)
      r.level = v->via.i64 < std::numeric_limits<int>::min() ? std::numeric_limits<int>::min()
                                                             : static_cast<int>(v->via.i64);
  }
  r.level_name = detail::str_field(payload, "level_name");
  r.logger = detail::str_field(payload, "logger");
  r.exception = detail::str_field(payload, "exception");
  if (auto v = map_get(payload, "created")) {
    double seconds = 0;
    if (v->type == msgpack::type::FLOAT64 || v->type == msgpack::type::FLOAT32)
      seconds = v->via.f64;
    else if (v->type == msgpack::type::POSITIVE_INTEGER)
      seconds = static_cast<double>(v->via.u64);
    // within system_clock's range (nanoseconds in 64 bits: +-292 years around 1970)
    if (std::isfinite(seconds) && std::abs(seconds) < 9.0e9)
      r.created = std::chrono::system_clock::time_point{
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::duration<double>{seconds})};
  }
  return r;
}

} // namespace pyvisor::protocol
