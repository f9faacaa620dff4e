#include "pyvisor/interpreter_state.hpp"

#include <ostream>

namespace pyvisor {

std::string_view to_string(interpreter_state s) noexcept {
  switch (s) {
    case interpreter_state::spawning: return "spawning";
    case interpreter_state::initializing: return "initializing";
    case interpreter_state::ready: return "ready";
    case interpreter_state::draining: return "draining";
    case interpreter_state::stopped: return "stopped";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, interpreter_state s) {
  return os << to_string(s);
}

} // namespace pyvisor
