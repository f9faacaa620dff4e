#include "pyvisor/pool_stats.hpp"

namespace pyvisor {

std::string_view to_string(worker_stats::state_t s) noexcept {
  switch (s) {
    case worker_stats::starting: return "starting";
    case worker_stats::ready: return "ready";
    case worker_stats::draining: return "draining";
    case worker_stats::restarting: return "restarting";
  }
  return "unknown";
}

std::string_view to_string(pool_event::kind_t k) noexcept {
  switch (k) {
    case pool_event::worker_started: return "worker_started";
    case pool_event::worker_exited: return "worker_exited";
    case pool_event::worker_restarting: return "worker_restarting";
    case pool_event::worker_recycling: return "worker_recycling";
    case pool_event::worker_retired: return "worker_retired";
    case pool_event::scaled_up: return "scaled_up";
    case pool_event::scaled_down: return "scaled_down";
    case pool_event::resized: return "resized";
    case pool_event::breaker_opened: return "breaker_opened";
    case pool_event::breaker_half_open: return "breaker_half_open";
    case pool_event::breaker_closed: return "breaker_closed";
  }
  return "unknown";
}

std::string pool_event::to_string() const {
  std::string s = "pool '" + pool + "': ";
  if (!worker.empty())
    s += "worker '" + worker + "' ";
  switch (kind) {
    case worker_started: s += "started"; break;
    case worker_exited: s += "exited"; break;
    case worker_restarting: s += "restarting in " + std::to_string(delay.count()) + " ms"; break;
    case worker_recycling: s += "recycling"; break;
    case worker_retired: s += "retired"; break;
    case scaled_up: s += "scaled up"; break;
    case scaled_down: s += "scaled down"; break;
    case resized: s += "resized"; break;
    case breaker_opened:
      s += "circuit breaker opened (probe in " + std::to_string(delay.count()) + " ms)";
      break;
    case breaker_half_open: s += "circuit breaker half open"; break;
    case breaker_closed: s += "circuit breaker closed"; break;
  }
  if (pid != 0)
    s += " (pid " + std::to_string(pid) + ")";
  if (!reason.empty())
    s += ": " + reason;
  if (report) {
    s += reason.empty() ? ": " : "; ";
    s += std::string{pyvisor::to_string(report->kind)};
    if (report->signal != 0)
      s += ", signal " + std::to_string(report->signal);
    else if (report->code >= 0)
      s += ", code " + std::to_string(report->code);
    if (report->reason.code != errc::none)
      s += ": " + report->reason.to_string();
  }
  return s;
}

} // namespace pyvisor
