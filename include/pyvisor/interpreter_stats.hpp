#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "pyvisor/supervision.hpp"

namespace pyvisor {

/// Counters of one interpreter, host side (interpreter::stats()).
struct interpreter_stats {
  std::size_t queued_bytes = 0;      ///< bytes accepted but not yet written to the pipe
  std::size_t in_flight = 0;         ///< requests sent and not yet answered
  std::size_t admission_queue = 0;   ///< requests admitted but held (busy, limits, not ready)
  std::uint64_t busy_transitions = 0;  ///< times the interpreter became busy
  std::uint64_t requests_served = 0;   ///< replies received
  std::uint64_t overloaded = 0;        ///< requests refused with `overloaded`
  std::uint64_t host_calls = 0;        ///< Python -> host calls, casts and sends handled
  std::uint64_t bytes_in = 0;          ///< bytes read from the runner
  std::uint64_t bytes_out = 0;         ///< bytes written to the runner
  std::uint64_t shared_memory_out = 0;  ///< requests whose large bytes went by shared memory
  std::uint64_t shared_memory_in = 0;   ///< replies whose bytes came by shared memory
  /// Replies the blocked caller read from the pipe itself (a blocking eval/call alone in
  /// flight); the I/O thread read the rest of requests_served.
  std::uint64_t replies_read_by_caller = 0;
  std::uint64_t restarts = 0;          ///< processes started after the first (supervised)
  std::optional<exit_report> last_exit;  ///< how the last process ended (code/signal, reason)
  std::chrono::system_clock::time_point last_exit_time{};  ///< when (set with last_exit)
  std::chrono::milliseconds uptime{0};  ///< since the running process became ready; 0 if none
};

} // namespace pyvisor
