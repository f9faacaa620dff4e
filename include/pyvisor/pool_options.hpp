#pragma once

/// Options of an interpreter pool (runtime::spawn_pool). Durations follow the convention of
/// interpreter_options.hpp: a duration means exactly that long, `forever` means no bound, an
/// unset std::optional means "the default described here".

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor {

/// Which worker a request without an env goes to.
enum class dispatch_policy : std::uint8_t {
  least_loaded,  ///< the ready worker with the fewest requests in flight (ties: round robin)
  round_robin,   ///< the next ready worker in turn
  /// Requests with eval_options::key go to the worker that owns the key on a consistent-hash
  /// ring (the same live worker every time; a worker that is replaced hands over only its own
  /// keys); requests without a key are dispatched least_loaded. Keys are honoured by every
  /// policy; this one only names the intent.
  key_affinity,
};

/// Circuit breaker on worker starts (Akka's CircuitBreaker, applied to starts): after
/// `max_failures` consecutive failed starts (init script raised, spawn failed, init timeout)
/// the breaker opens: failed workers are no longer restarted, and requests that no running
/// worker can take are answered `pool_unavailable` at once with the last start error. After
/// `reset_timeout` one probe start runs (half open): if it comes up the breaker closes and the
/// other workers start again; if not it opens again with the timeout doubled (up to
/// `max_reset_timeout`).
struct breaker_policy {
  std::size_t max_failures = 3;
  std::chrono::milliseconds reset_timeout = 1s;
  std::chrono::milliseconds max_reset_timeout = 60s;
};

/// Replacing workers before they go bad (gunicorn max_requests + jitter, Celery's
/// max_memory_per_child). A worker due for recycling stops taking new requests, a fresh worker
/// is started, and the old one leaves once the fresh one is ready and its own requests are
/// done: capacity never drops. Envs on a recycled worker are lost (env_lost).
struct recycle_policy {
  /// Replace a worker after this many requests plus a random 0..max_requests_jitter (so workers
  /// do not all recycle at once); 0 = off.
  std::uint64_t max_requests = 0;
  std::uint64_t max_requests_jitter = 0;
  /// Replace a worker whose resident set exceeds this many bytes (read from /proc/PID/statm after
  /// replies, at most every `rss_check_interval` per worker); 0 = off.
  std::size_t max_rss_bytes = 0;
  std::chrono::milliseconds rss_check_interval = 100ms;
  /// Replace a worker that served nothing for this long (releases what it accumulated).
  std::chrono::milliseconds max_idle = forever;
};

/// Per-request time limits of a pool (Celery's soft/hard limits, uWSGI's harakiri). Unlike a
/// request's timeout, they apply to every request, whatever its own options say.
struct time_limits {
  /// The request is cancelled (async code) or interrupted (sync code gets KeyboardInterrupt and
  /// can clean up); the caller gets `timeout`. A request's own shorter timeout still applies.
  std::chrono::milliseconds soft = forever;
  /// The worker running a request this long is killed and replaced (a crash); the caller got
  /// `timeout` already (at the soft limit, or at the hard limit when no soft limit is set).
  std::chrono::milliseconds hard = forever;
};

/// Growing and shrinking between min_workers and max_workers (Celery autoscale, uWSGI cheaper).
/// Checked every `check_interval` on the actor clock: one worker is added when requests waited
/// in the pool queue, or the requests in flight per ready worker stayed above
/// `inflight_per_worker`, for a whole `up_window`; one is removed (the least busy, after it
/// drained) when the pool had nothing queued and nothing in flight for `idle_timeout`.
struct autoscale_policy {
  std::size_t min_workers = 0;  ///< 0: the pool's `workers`
  std::size_t max_workers = 0;  ///< 0: the pool's `workers` (no autoscaling)
  double inflight_per_worker = 1.0;
  std::chrono::milliseconds up_window = 1s;
  std::chrono::milliseconds idle_timeout = 60s;
  std::chrono::milliseconds check_interval = 250ms;
};

/// Everything that configures a pool. Every field has a usable default.
struct pool_options {
  /// Name in logs, events and stats; workers are labelled "<name>-w<N>".
  std::string name = "pool";
  /// The spec every worker starts from (python, init script, limits, ...). Its heartbeat, when
  /// left off, is replaced by `heartbeat` below; its interrupt policy's kill_after by the hard
  /// time limit when one is set.
  interpreter_options worker;
  /// Workers started at once.
  std::size_t workers = 2;
  /// spawn_pool returns when this many workers are ready; unset: all of `workers`. 0 returns
  /// at once (requests wait in the queue for the first worker).
  std::optional<std::size_t> min_ready;
  pyvisor::dispatch_policy dispatch = dispatch_policy::least_loaded;
  /// Requests sent to one worker and not answered yet; more wait in the pool queue (where any
  /// worker can take them, and where a crash does not touch them).
  std::size_t max_inflight_per_worker = 32;
  /// Requests waiting in the pool queue; past that, `overloaded` at once.
  std::size_t max_queued = 10000;
  /// How long a request may wait in the queue before `timeout`; unset: only its own deadline.
  std::optional<std::chrono::milliseconds> queue_timeout;
  /// Liveness watchdog of every worker (on for pools: 1 s interval, 5 s timeout). A worker that
  /// gives no sign of life is killed with its Python stack and replaced; its requests get
  /// interpreter_exited ("heartbeat timeout").
  heartbeat_policy heartbeat{1s, 5s};
  /// Delays between restarts of one worker (0, then base doubling up to cap, jittered).
  backoff_policy backoff;
  breaker_policy breaker;
  recycle_policy recycle;
  time_limits limits;
  autoscale_policy autoscale;
};

} // namespace pyvisor
