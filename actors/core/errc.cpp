#include "pyvisor/errc.hpp"

#include <array>
#include <ostream>

namespace pyvisor {

namespace {

// Indexed by the enumerator value; a static_assert keeps it complete.
constexpr std::array<std::string_view, 22> names = {
  "none",           "python_exception", "syntax_error",     "timeout",
  "cancelled",      "env_not_found",    "env_lost",         "interpreter_exited",
  "interpreter_down", "init_failed",    "init_timeout",     "spawn_failed",
  "overloaded",     "unserializable",   "protocol_error",   "frame_too_large",
  "config_error",   "shutting_down",    "invalid_argument", "type_mismatch",
  "env_key_not_found",
  "pool_unavailable",
};
static_assert(names.size() == static_cast<std::size_t>(errc::pool_unavailable) + 1,
              "every errc needs a name");

} // namespace

std::string_view to_string(errc code) noexcept {
  auto i = static_cast<std::size_t>(code);
  return i < names.size() ? names[i] : std::string_view{"unknown"};
}

std::optional<errc> errc_from_string(std::string_view name) noexcept {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == name)
      return static_cast<errc>(i);
  return std::nullopt;
}

std::ostream& operator<<(std::ostream& os, errc code) {
  return os << to_string(code);
}

} // namespace pyvisor
