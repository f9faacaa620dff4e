#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor.hpp>

#include "interpreter/request_table.hpp"
#include "interpreter/status.hpp"
#include "pool/latency_histogram.hpp"

namespace pyvisor::pooling {

/// One worker of a pool as the dispatcher and the pool actor share it. The interpreter itself
/// (its actor, request table and status) is made by the facade's worker factory; the pool
/// actor owns the worker's lifecycle, the dispatcher its routing fields (under its mutex), and
/// the counters are atomics written where requests finish.
struct worker {
  std::uint32_t number = 0;  ///< "w<number>", never reused within a pool
  std::string id;
  std::uint32_t ring_slot = 0;  ///< its place on the hash ring (a recycling replacement inherits it)
  caf::actor actor;             ///< the long-lived interpreter actor (child protocol)
  std::shared_ptr<interp::request_table> table;  ///< null only for test doubles
  std::shared_ptr<interp::status> st;            ///< null only for test doubles

  // ---- routing (dispatcher, under its mutex) ----
  bool accepting = false;   ///< takes new requests (ready, not draining)
  bool present = true;      ///< still in the dispatcher (false once removed)
  bool drain_watch = false; ///< tell the pool actor when in_flight reaches 0 while not accepting
  std::size_t in_flight = 0;

  // ---- counters (any thread) ----
  std::atomic<std::uint64_t> served{0};
  std::atomic<std::uint64_t> errors{0};
  std::array<std::atomic<std::uint64_t>, 32> errors_by_code{};  ///< indexed by errc
  std::atomic<std::uint64_t> recycle_after{0};  ///< served count that triggers recycling; 0: off
  std::atomic<bool> recycle_flagged{false};
  std::atomic<std::size_t> rss_bytes{0};
  std::atomic<std::int64_t> rss_checked_ns{0};   ///< steady clock
  std::atomic<std::int64_t> last_active_ns{0};   ///< steady clock: last answer (or start)
  latency_histogram latency;

  int pid() const {
    if (!st)
      return 0;
    std::lock_guard<std::mutex> g{st->mu};
    return st->pid;
  }
};

inline std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// Resident set size of process `pid` in bytes from /proc/PID/statm; 0 when unreadable.
std::size_t read_rss_bytes(int pid) noexcept;

} // namespace pyvisor::pooling
