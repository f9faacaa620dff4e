#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "interpreter/request_table.hpp"
#include "io/deadline_timer.hpp"
#include "pool/hash_ring.hpp"
#include "pool/owned_call.hpp"
#include "pool/worker.hpp"
#include "pyvisor/errc.hpp"
#include "pyvisor/pool_options.hpp"

namespace pyvisor::pooling {

using clock = std::chrono::steady_clock;

/// Routes a pool's requests to its workers, on the caller's thread: picks a worker (least
/// loaded, round robin, or the key's owner on the hash ring) among those accepting and below
/// max_inflight_per_worker, and submits to that worker's request table directly (no actor hop).
/// What no worker can take waits in the pool queue (bounded; each entry with its deadline and
/// the queue timeout) and is dispatched, in order, as answers free capacity or workers become
/// ready. The pool actor tells it which workers accept; it tells the pool actor when a worker
/// is due for recycling and when a worker that stopped accepting has drained.
///
/// Thread-safety: everything may be called from any thread. Completions run on the I/O thread,
/// or on the calling thread when answered at once (overloaded, pool_unavailable, refused).
class dispatcher : public std::enable_shared_from_this<dispatcher> {
public:
  /// The answer, and the worker that gave it (null when no worker was involved).
  using completion = std::function<void(protocol::reply, const std::shared_ptr<worker>&)>;

  struct config {
    std::string name;
    dispatch_policy policy = dispatch_policy::least_loaded;
    std::size_t max_inflight_per_worker = 32;
    std::size_t max_queued = 10000;
    std::optional<std::chrono::milliseconds> queue_timeout;
    std::chrono::milliseconds soft_limit = forever;
    recycle_policy recycle;
  };

  /// To the pool actor (any thread, must not block): a worker reached a recycling limit (it no
  /// longer accepts), and a worker that does not accept has nothing in flight.
  struct listener {
    std::function<void(std::uint32_t number, std::string reason)> recycle_due;
    std::function<void(std::uint32_t number)> drained;
  };
  void listen(listener l);

  static std::shared_ptr<dispatcher> make(io::io_loop& loop, config cfg);
  ~dispatcher();

  /// Where a request went at once: the worker's table and what it did with it (no table:
  /// queued, or answered at once). A blocking caller whose request went out alone reads its
  /// reply itself (request_table::read_reply_here).
  struct sent {
    std::shared_ptr<interp::request_table> table;
    interp::request_table::submitted request;
  };

  /// Dispatches `r` (its pointers are read only during the call) to a worker now, or queues it.
  sent submit(const interp::request& r, interp::deadline d, std::string_view key, completion done);

  /// Sends `r` to worker `w` whatever its state (requests on an env pinned there).
  sent submit_to(const std::shared_ptr<worker>& w, const interp::request& r, interp::deadline d,
                 completion done);

  // ---- from the pool actor ----------------------------------------------------------------

  /// A new worker (not accepting yet) with its place on the ring.
  void add(std::shared_ptr<worker> w);
  /// Takes it off the ring and out of dispatch (its requests in flight still finish).
  void remove(std::uint32_t number);
  /// Whether `number` takes new requests; true dispatches what waits.
  void set_accepting(std::uint32_t number, bool on);
  /// Asks for a `drained` call once `number` (not accepting) has nothing in flight; calls it
  /// at once (on this thread) when that is already so.
  void watch_drain(std::uint32_t number);
  /// Circuit breaker: while set, requests no worker can take now are answered with it
  /// (queued ones at once) instead of waiting.
  void set_unavailable(std::optional<error> e);
  /// Stopping: queued and new requests are answered `e`.
  void refuse(error e);
  /// Answers every queued request `cancelled`; returns how many.
  std::size_t cancel_queued();

  /// The worker `number`, if present.
  std::shared_ptr<worker> find(std::uint32_t number) const;

  struct snapshot {
    std::size_t queued = 0;
    std::size_t in_flight = 0;
    std::size_t accepting = 0;
    std::vector<std::pair<std::uint32_t, std::size_t>> in_flight_by_worker;
    std::vector<std::pair<errc, std::uint64_t>> errors;
    std::uint64_t served = 0;
  };
  snapshot stats() const;
  latency_summary latency() const noexcept { return latency_.summary(); }

private:
  struct queued {
    owned_call call;
    interp::deadline d;
    clock::time_point expires;
    bool by_queue_timeout = false;  // `expires` is the queue timeout, not the request's deadline
    std::string key;
    completion done;
    clock::time_point t0;
  };
  using batch = std::vector<std::pair<std::shared_ptr<worker>, queued>>;

  dispatcher(io::io_loop& loop, config cfg);
  std::shared_ptr<worker> pick_locked(std::string_view key);
  bool has_room_locked(const worker& w) const {
    return w.accepting && w.in_flight < cfg_.max_inflight_per_worker;
  }
  /// Submits to `w`'s table; an unpinned request whose worker has no running process goes
  /// back to the queue instead (bounce).
  sent send(const std::shared_ptr<worker>& w, const interp::request& r, interp::deadline d,
            completion done, clock::time_point t0, std::string_view key, bool pinned);
  void bounce(const std::shared_ptr<worker>& w, const interp::request& r, interp::deadline d,
              std::string_view key, clock::time_point t0, completion done);
  /// Counts an answer; returns whether requests wait in the queue (then the caller pumps).
  bool finished(const std::shared_ptr<worker>& w, clock::time_point t0, protocol::reply& rep);
  void pump();
  batch take_dispatchable_locked();
  void expire_due();
  void answer_all(std::map<std::uint64_t, queued> q, const error& e);
  /// Answers a request no worker saw (counted in the errors by code).
  void reject(completion& done, error e);
  void erase_locked(std::map<std::uint64_t, queued>::iterator i);
  void check_drained_locked(worker& w, std::vector<std::uint32_t>& drained);
  void notify_drained(const std::vector<std::uint32_t>& drained);

  config cfg_;
  std::shared_ptr<io::deadline_timer> timer_;
  latency_histogram latency_;
  std::array<std::atomic<std::uint64_t>, 32> errors_{};
  std::atomic<std::uint64_t> served_{0};

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<worker>> workers_;                 // guarded by mu_
  hash_ring ring_;                                               // guarded by mu_
  std::size_t rr_ = 0;                                           // guarded by mu_
  std::map<std::uint64_t, queued> queue_;                        // guarded by mu_ (FIFO by seq)
  std::multimap<clock::time_point, std::uint64_t> expiry_;       // guarded by mu_
  // Queue order: seq_ counts up for new requests, front_seq_ down for bounced ones (ahead).
  std::uint64_t seq_ = std::uint64_t{1} << 62;                   // guarded by mu_
  std::uint64_t front_seq_ = std::uint64_t{1} << 62;             // guarded by mu_
  std::optional<error> unavailable_;                             // guarded by mu_
  std::optional<error> refused_;                                 // guarded by mu_
  listener listener_;                                            // guarded by mu_
  std::atomic<std::uint64_t> next_env_{std::uint64_t{1} << 40};

public:
  /// A pool-wide env id (distinct from ids a worker's own table hands out).
  std::uint64_t next_env_id() noexcept { return next_env_.fetch_add(1, std::memory_order_relaxed); }
};

} // namespace pyvisor::pooling
