#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "io/connection.hpp"
#include "interpreter/env_book.hpp"
#include "interpreter/request.hpp"
#include "io/deadline_timer.hpp"
#include "io/shared_area.hpp"
#include "protocol/message.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/interpreter_stats.hpp"

namespace pyvisor::interp {

/// The requests of one interpreter: ids, admission and busy limits, deadlines and completions.
/// It is the only place that encodes requests, and it outlives the processes: a connection is
/// attached for each process, and when that process ends the requests it held are answered
/// and the table waits for the next one (or refuses everything once the interpreter stops).
///
/// Admission: a request is written at once (by the calling thread) when admission is open, the
/// connection is not busy, nothing is queued ahead and fewer than max_inflight are unanswered;
/// otherwise it waits in the admission queue (which also holds requests made before ready or
/// while no process is attached); a full queue answers `overloaded` at once.
///
/// Deadlines: a request whose deadline passes is answered `timeout`; if it was sent, the runner
/// gets `cancel` and the owner is told (`abandoned`) so it can escalate. A request that timed
/// out stays counted against max_inflight until the runner answers it.
///
/// Thread-safety: every function may be called from any thread. Completions run on the I/O
/// thread, or on the calling thread when the request is answered at once (overloaded, refused).
class request_table : public std::enable_shared_from_this<request_table> {
public:
  using completion = std::function<void(protocol::reply)>;

  struct config {
    busy_limits busy;
    std::size_t max_frame_bytes = std::size_t{64} << 20;
    /// Arguments that are bins of at least this many bytes go by shared memory once a
    /// process's area is in use (use_area); 0: never.
    std::size_t shared_from = 0;
    std::string label;
  };

  static std::shared_ptr<request_table> make(io::io_loop& loop, config cfg);
  ~request_table();

  /// Receives the ids of sent requests that timed out (I/O thread), to escalate.
  void on_abandoned(std::function<void(std::uint64_t)> f);

  /// A fresh env id (never 0).
  std::uint64_t next_env_id() noexcept { return next_env_.fetch_add(1, std::memory_order_relaxed); }

  /// What submit() did with a request.
  struct submitted {
    std::uint64_t id = 0;  ///< 0: answered at once (refused, overloaded, too large)
    bool alone = false;    ///< written at once, with no other request in flight
  };

  /// Encodes `r`, admits it and returns at once. `done` runs exactly once. `priority` (the
  /// init script) is written even while admission is held and ignores every limit.
  submitted submit(const request& r, deadline d, completion done, bool priority = false);

  /// For a caller that blocks until request `id` (submitted `alone`) is answered: reads the
  /// reply on the calling thread (io::connection::read_reply_here) until `answered()`; false
  /// when the process's pipe could not be lent (the caller waits as usual).
  bool read_reply_here(std::uint64_t id, io::thread_wake& wake,
                       const std::function<bool()>& answered);
  /// The calling thread's wake for read_reply_here (null: none can be made).
  std::shared_ptr<io::thread_wake> wake_of_this_thread() { return loop_.wakes().of_this_thread(); }

  /// Whether a process is attached and admitting, or about to (false from the moment its
  /// process ended until the next one is ready, and once refusing): a pool routes around a
  /// worker whose table would only stash the request.
  bool running() const;

  /// Sends `drop_env` in order with the requests (behind queued ones); dropped when refusing.
  void drop_env(std::uint64_t env);

  /// Cancels everything: queued requests are answered `cancelled` at once, sent ones get a
  /// `cancel` frame (their runner answers `cancelled`). Returns the ids in flight.
  std::vector<std::uint64_t> cancel_all();

  /// Whether `id` is waiting for its reply / timed out and its runner has not answered yet.
  bool is_pending(std::uint64_t id) const;
  bool unacknowledged(std::uint64_t id) const;

  // ---- envs (ids, durability, recipes) ------------------------------------------------------

  /// Why requests on env `id` cannot run (its process died and it was not durable, or its
  /// rebuild failed): env_lost with the cause; nullopt when it is usable (or unknown here).
  std::optional<error> env_error(std::uint64_t id) const;

  /// The steps that rebuild every durable env on a new process, in creation order: its
  /// make_env, then the evals marked replay, in the order they succeeded.
  std::vector<owned_request> rebuild_plan() const;

  /// A rebuild step of env `id` failed with `cause`: the env is lost.
  void env_rebuild_failed(std::uint64_t id, const error& cause);

  // ---- lifecycle (called by the interpreter actor, the one owner of the lifecycle) ----------

  /// A new process: requests go to `c` (admission stays held until open()).
  void attach(std::shared_ptr<io::connection> c);
  /// The runner of the attached process mapped `area`: large arguments go through it.
  void use_area(std::shared_ptr<io::shared_area> area);
  /// Ready: admits queued and new requests.
  void open();
  /// The interpreter is stopping or stopped: queued and new requests are answered `e`;
  /// `stopping` makes runner `cancelled` answers (for requests nobody cancelled) stop errors.
  void refuse(error e, bool stopping);
  /// The process ended: requests sent to it are answered `e`, the table lets go of the connection.
  /// Queued requests stay queued when `keep_queued`, otherwise they are answered `e` too.
  void connection_lost(const error& e, bool keep_queued);
  /// A supervised process ended and another will follow: non-durable envs are lost (queued
  /// requests on them are answered env_lost), and until open() at most `stash` requests wait.
  void restarting(const error& cause, std::size_t stash);

  // ---- from the process (I/O thread) --------------------------------------------------------

  /// A response frame.
  void on_response(protocol::message& m);
  /// The connection's backlog drained: admit what waits.
  void on_drained();

  /// Counts a reply a blocked caller read itself (stats().replies_read_by_caller).
  void count_caller_read() noexcept { caller_read_.fetch_add(1, std::memory_order_relaxed); }

  /// Counts a finished Python -> host message (stats().host_calls).
  void count_host_message() noexcept { host_handled_.fetch_add(1, std::memory_order_relaxed); }

  void set_label(std::string label);
  interpreter_stats stats() const;

private:
  struct pending_entry {
    completion cb;
    bool sent = false;
    bool cancel_sent = false;  // cancel_all() asked the runner to cancel it
    std::multimap<clock::time_point, std::uint64_t>::iterator due;  // end(): no deadline
    std::int64_t timeout_ms = 0;
  };
  struct queued {
    std::uint64_t id;  // 0: a notification
    protocol::frame_out frame;
    std::uint64_t env = 0;  // the env it runs in (requests on lost envs leave the stash)
  };
  using taken = std::vector<std::pair<std::uint64_t, completion>>;

  request_table(io::io_loop& loop, config cfg);
  protocol::frame_out encode(std::uint64_t id, const request& r) const;
  void send_locked(protocol::frame_out frame, std::uint64_t id = 0);
  void pump_locked();
  void forget_locked(std::unordered_map<std::uint64_t, pending_entry>::iterator i);
  taken take_queued_locked();
  void expire_due();
  void vet_runner_error(protocol::reply& rep, bool stop_cancelled) const;
  bool admit_now_locked() const;
  completion recording(const request& r, completion done);

  io::io_loop& loop_;
  busy_limits busy_;
  std::size_t max_frame_;
  std::size_t shared_from_;
  std::shared_ptr<io::deadline_timer> timer_;
  std::function<void(std::uint64_t)> abandoned_;

  mutable std::mutex mu_;
  std::string label_;                                          // guarded by mu_
  std::shared_ptr<io::connection> conn_;                       // guarded by mu_
  std::shared_ptr<io::shared_area> area_;  // conn_'s process's shared memory; guarded by mu_
  std::uint64_t shared_out_ = 0, shared_in_ = 0;  // payloads by shared memory; guarded by mu_
  std::unordered_map<std::uint64_t, pending_entry> pending_;   // guarded by mu_
  std::multimap<clock::time_point, std::uint64_t> deadlines_;  // guarded by mu_
  std::deque<queued> queue_;                                   // guarded by mu_
  std::size_t queued_requests_ = 0;                            // guarded by mu_
  std::size_t inflight_ = 0;                                   // guarded by mu_
  bool open_ = false;                                          // guarded by mu_
  std::optional<error> refused_;                               // guarded by mu_
  bool stopping_ = false;                                      // guarded by mu_
  std::unordered_set<std::uint64_t> unacknowledged_;           // guarded by mu_
  std::uint64_t overloaded_ = 0;                               // guarded by mu_
  std::uint64_t served_ = 0;                                   // guarded by mu_
  io::connection::counters past_;  // counters of earlier connections; guarded by mu_
  env_book envs_;                                              // guarded by mu_
  std::size_t stash_limit_ = 0;  // while restarting: the admission queue's bound; 0: none

  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<std::uint64_t> next_env_{1};
  std::atomic<std::uint64_t> host_handled_{0};
  std::atomic<std::uint64_t> caller_read_{0};
};

} // namespace pyvisor::interp
