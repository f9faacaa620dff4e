#include "pyvisor/supervision.hpp"

#include <ostream>

namespace pyvisor {

std::string_view to_string(exit_kind k) noexcept {
  switch (k) {
    case exit_kind::normal: return "normal";
    case exit_kind::shutdown: return "shutdown";
    case exit_kind::crash: return "crash";
    case exit_kind::start_failed: return "start_failed";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, exit_kind k) {
  return os << to_string(k);
}

std::string_view to_string(child_info::state_t s) noexcept {
  switch (s) {
    case child_info::starting: return "starting";
    case child_info::running: return "running";
    case child_info::restarting: return "restarting";
    case child_info::stopped: return "stopped";
  }
  return "unknown";
}

std::string supervision_event::to_string() const {
  std::string who = "supervisor '" + supervisor + "'";
  std::string c = "child '" + child + "'";
  auto why = [&] {
    std::string s = std::string{pyvisor::to_string(report.kind)};
    if (report.signal != 0)
      s += ", signal " + std::to_string(report.signal);
    else if (report.code >= 0)
      s += ", code " + std::to_string(report.code);
    if (report.reason.code != errc::none)
      s += ": " + report.reason.to_string();
    return s;
  };
  switch (kind) {
    case started:
      return child.empty() ? who + ": started" : who + ": " + c + " started (pid " + std::to_string(pid) + ")";
    case exited:
      return who + ": " + c + " exited (" + why() + ")";
    case restarting:
      return who + ": " + c + " restarting in " + std::to_string(delay.count()) + " ms";
    case gave_up:
      return who + ": gave up (restart intensity exceeded); last exit " + why();
    case stopped:
      return who + ": stopped";
  }
  return who;
}

} // namespace pyvisor
