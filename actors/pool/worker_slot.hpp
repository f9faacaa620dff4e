#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include <caf/actor_clock.hpp>

#include "pool/worker.hpp"
#include "pyvisor/pool_stats.hpp"
#include "supervision/restart_policy.hpp"

namespace pyvisor::pooling {

/// One worker as the pool actor keeps it.
struct slot {
  std::shared_ptr<worker> w;
  worker_stats::state_t state = worker_stats::starting;
  supervision::restart_backoff backoff;
  caf::actor_clock::time_point up_since{};
  std::uint64_t restarts = 0;
  std::optional<exit_report> last_exit;
  int pid = 0;
  int last_pid = 0;  // the pid of its last process (for the events after it ended)
  bool leaving = false;        // recycled, scaled down or resized away: never restarted
  bool exit_sent = false;      // told to stop for good
  bool waits_breaker = false;  // crashed on start while the breaker is open
  std::uint32_t replacement = 0;  // recycling: the fresh worker taking over
  std::uint64_t gen = 0;          // invalidates stale restart timers

  explicit slot(backoff_policy b) : backoff(b) {}
};

/// Whether its process is up (taking requests, or finishing them before it leaves).
inline bool running(const slot& s) {
  return s.state == worker_stats::ready || s.state == worker_stats::draining;
}

} // namespace pyvisor::pooling
