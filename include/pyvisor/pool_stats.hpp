#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pyvisor/errc.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor {

/// Latency percentiles of the requests a pool (or one worker) answered, from submit to answer,
/// including time in the pool queue. From a log-scale histogram: within ~10 % of the truth.
struct latency_summary {
  std::uint64_t count = 0;
  std::chrono::microseconds p50{0};
  std::chrono::microseconds p90{0};
  std::chrono::microseconds p99{0};
  std::chrono::microseconds max{0};
};

/// One worker of a pool.
struct worker_stats {
  enum state_t : std::uint8_t {
    starting,    ///< its process is starting (first start, or a restart)
    ready,       ///< takes requests
    draining,    ///< leaving (recycling, scale-down, resize): finishes its requests, takes none
    restarting,  ///< crashed; waits for its backoff (or for the circuit breaker)
  } state = starting;
  std::string id;  ///< "w1", "w2", ... (never reused within a pool)
  int pid = 0;
  std::uint64_t restarts = 0;
  std::optional<exit_report> last_exit;
  std::size_t in_flight = 0;
  std::size_t queued = 0;    ///< requests held in the worker's own admission queue (its envs')
  std::uint64_t served = 0;  ///< requests answered (values and errors)
  /// Of its replies, those its blocked caller read from the pipe itself (a blocking pool
  /// eval/call alone on the worker); as interpreter_stats::replies_read_by_caller.
  std::uint64_t replies_read_by_caller = 0;
  std::uint64_t errors = 0;
  std::vector<std::pair<errc, std::uint64_t>> errors_by_code;  ///< only codes that occurred
  std::size_t rss_bytes = 0;  ///< last reading (0 before the first)
  std::uint64_t busy_transitions = 0;  ///< times its current process became busy (backpressure)
  std::chrono::milliseconds uptime{0};
  latency_summary latency;
};

std::string_view to_string(worker_stats::state_t s) noexcept;

/// A pool as a whole (pool::stats()).
struct pool_stats {
  std::string name;
  std::size_t workers = 0;  ///< workers that exist (any state)
  std::size_t ready = 0;    ///< workers taking requests
  std::size_t in_flight = 0;
  std::size_t queued = 0;  ///< requests in the pool queue
  std::uint64_t served = 0;
  std::uint64_t restarts = 0;  ///< worker processes started again after a crash
  std::uint64_t recycled = 0;  ///< workers replaced by recycling (requests, RSS, idle)
  bool breaker_open = false;
  std::optional<error> last_start_error;
  /// Answers that were errors, by code (only codes that occurred), e.g. {timeout, 3}.
  std::vector<std::pair<errc, std::uint64_t>> errors;
  latency_summary latency;
  std::vector<worker_stats> per_worker;
};

/// A lifecycle decision of a pool, with its reason: to the runtime's log sink (a `runtime` line)
/// and to pool::subscribe callbacks.
struct pool_event {
  enum kind_t : std::uint8_t {
    worker_started,    ///< a worker is ready (pid)
    worker_exited,     ///< a worker's process ended (report)
    worker_restarting, ///< it starts again after `delay`
    worker_recycling,  ///< it will be replaced (reason: max_requests, max_rss_bytes, max_idle)
    worker_retired,    ///< it left the pool (recycled, scaled down, resized)
    scaled_up,         ///< autoscaling added a worker (reason)
    scaled_down,       ///< autoscaling removes a worker (reason)
    resized,           ///< resize(n)
    breaker_opened,    ///< report: the last failed start
    breaker_half_open, ///< a probe start runs
    breaker_closed,
  } kind = worker_started;
  std::string pool;
  std::string worker;  ///< empty for pool-wide events
  int pid = 0;
  std::string reason;
  std::optional<exit_report> report;
  std::chrono::milliseconds delay{0};

  /// One line, e.g. "pool 'web': worker 'w3' recycling (max_requests: served 1000)".
  std::string to_string() const;
};

std::string_view to_string(pool_event::kind_t k) noexcept;

} // namespace pyvisor
