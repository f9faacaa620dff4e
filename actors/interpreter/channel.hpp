#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "io/io_loop.hpp"
#include "process/spawn.hpp"
#include "protocol/frame_reader.hpp"
#include "core/limits.hpp"
#include "protocol/message.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/interpreter_stats.hpp"
#include "pyvisor/log_record.hpp"
#include "pyvisor/value.hpp"

namespace pyvisor::interp {

/// What the runner said in its `ready` notification.
struct ready_info {
  std::string python_version;
  std::string executable;
  std::string codec;
  int python_pid = 0;
  int protocol = 0;
};

/// How the process ended (after it was reaped).
struct exit_info {
  int code = -1;    ///< exit code, or -1 when killed by a signal
  int signal = 0;   ///< terminating signal, or 0
  bool requested = false;  ///< a stop was requested before the exit
  pyvisor::error reason;   ///< what pending calls were failed with
};

/// A call, cast or send from Python to the host (docs/protocol.md, issue 4).
struct host_message {
  enum kind_t : std::uint8_t { call, cast, send } kind = call;
  std::uint64_t rid = 0;     ///< the runner's request id (calls only)
  std::string name;          ///< function name, or the send target's name
  std::vector<value> args;   ///< call/cast arguments; for send: the one value
  std::optional<value> target;  ///< send: an opaque handle target instead of a name
};

/// Events the channel reports to its owner (the interpreter actor), from the I/O thread.
using channel_event = std::variant<ready_info, exit_info, host_message>;

/// The connection to one Python process: request table, admission and busy limits, ordered
/// writer, frame reader, log forwarding and reaping. It is the hot path, so it is not an actor:
/// a caller thread encodes its frame and writes it itself when nothing is queued ahead (order
/// is kept by one mutex), and the I/O thread completes the caller straight from the request
/// table. So a blocking call costs exactly one wake-up of the caller; lifecycle and policy stay
/// in the actor.
///
/// Admission: a request is *sent* at once when the interpreter is ready, not busy, nothing is
/// queued ahead and fewer than max_inflight are unanswered; otherwise it waits in the admission
/// queue (which also holds requests made before ready); when that is full the caller gets
/// `overloaded` at once. Busy = bytes not yet written above high_water, until below low_water.
///
/// Thread-safety: every public function may be called from any thread, except `attach` and
/// the watcher callbacks, which run on the I/O thread.
class channel : public std::enable_shared_from_this<channel> {
public:
  using completion = std::function<void(protocol::reply)>;
  using event_handler = std::function<void(channel_event)>;

  channel(io::io_loop& loop, core::limits lim, busy_limits busy, std::string label,
          log_sink sink);
  ~channel();

  /// Sets who receives events. Call before attach.
  void on_event(event_handler h) { events_ = std::move(h); }

  /// Takes over a spawned process: watches its pipes and its pidfd. I/O thread only.
  void attach(process::spawned_process p);

  /// A fresh request id (never 0).
  std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  /// A fresh environment id for this process (never 0).
  std::uint64_t next_env_id() noexcept { return next_env_id_.fetch_add(1, std::memory_order_relaxed); }

  /// Registers `cb` under `id`, then sends `frame` or queues it (see Admission). `cb` runs
  /// exactly once: with the response, or with the error that ended the request (exit, stop,
  /// overloaded, ...); abandon() cancels it instead. `priority` frames (the init script) pass
  /// the gate and every limit.
  void submit(std::uint64_t id, std::string frame, completion cb, bool priority = false);

  /// Sends a notification (drop_env, ...) in order with the requests (queued behind them when
  /// they are queued); dropped when the interpreter is stopping or gone.
  void notify(std::string frame);

  /// Writes a response to a runner's request (host_call), ahead of any queue.
  void respond(std::string frame);

  /// A host message reported by an event is finished (flow control of Python -> host).
  void host_done();

  /// Forgets request `id` (its completion will not run; a late reply is dropped) and tells the
  /// runner to cancel it if it was already sent. Returns false when it was no longer pending
  /// (its completion ran or is running).
  bool abandon(std::uint64_t id);

  /// Whether `id` is waiting for its reply (registered and not abandoned).
  bool is_pending(std::uint64_t id) const;

  /// Whether `id` was abandoned (timed out) and the runner has not answered it yet.
  bool unacknowledged(std::uint64_t id) const;

  /// Interrupts synchronous code that ignores cancellation: writes the ids to the interrupt
  /// pipe (child fd 5), then sends SIGINT to the runner (docs/protocol.md). Returns false when
  /// there is no interrupt pipe (stdio transport) or the process is gone.
  bool interrupt(const std::vector<std::uint64_t>& ids);

  /// Asks the runner for the Python stack of every thread (SIGUSR2: faulthandler writes it to
  /// the dump pipe, child fd 6, from C, without the GIL). False when there is no dump pipe or
  /// the process is gone.
  bool request_stack_dump();

  /// Appends what the runner wrote to the dump pipe so far to `out` (at most 64 KiB in all);
  /// returns whether anything was read.
  bool read_stack_dump(std::string& out);

  /// Cancels everything: requests not yet sent fail with `cancelled` at once; requests in
  /// flight get a `cancel` frame and an interrupt, so they reply `cancelled`. Returns the ids
  /// in flight.
  std::vector<std::uint64_t> interrupt_all();

  /// Lets queued and new requests through (the interpreter became ready).
  void open_gate();

  /// Stop requested: new requests fail with interpreter_down, queued ones too; a `shutdown`
  /// notification is sent after what is being written and then the write end is closed.
  void begin_stop();

  /// Fails every pending and queued request with `e` (used for init failures).
  void fail_all(const error& e);

  /// Sends `sig` to the child's whole process group, unless it was reaped already.
  void signal_group(int sig);

  /// Marks the next exit as caused by `e` (a protocol violation, an init timeout, ...), so
  /// pending calls fail with it instead of interpreter_exited.
  void set_exit_reason(error e);

  int pid() const noexcept { return pid_.load(); }
  bool reaped() const noexcept { return reaped_.load(); }

  /// The label (fixed once the process is attached).
  std::string label() const {
    std::lock_guard<std::mutex> g{mu_};
    return label_;
  }

  /// Host-side counters.
  interpreter_stats stats() const;
  std::size_t pending_count() const;

private:
  struct outgoing {
    std::string frame;
    std::size_t offset = 0;
  };
  struct queued {
    std::uint64_t id;  // 0: a notification
    std::string frame;
  };
  struct pending_entry {
    completion cb;
    bool sent = false;
    bool cancel_sent = false;  // interrupt_all() asked the runner to cancel it
  };

  void send_locked(std::uint64_t id, std::string frame);
  void write_locked(std::string frame);
  void pump_locked();
  void arm_writer_locked();
  void flush_locked();
  void on_writable();
  void on_readable();
  void on_log_readable(int& fd, std::shared_ptr<io::fd_watcher>& w, std::string& partial,
                       log_source src);
  void emit_line(log_source src, std::string_view line, std::uint64_t request_id = 0);
  void process_frames();
  void dispatch(protocol::message m);
  void dispatch_host(protocol::message& m);
  void violation(errc code, std::string what);
  void write_failed_locked(int err);
  void close_request_pipe();
  bool python_exiting() const;
  void on_write_failed(int err);
  void vet_runner_error(protocol::reply& rep, bool stop_cancelled);
  void on_exit();
  std::deque<std::pair<std::uint64_t, completion>> take_all_locked();
  std::deque<std::pair<std::uint64_t, completion>> take_queued_locked();
  void forget_locked(std::unordered_map<std::uint64_t, pending_entry>::iterator i);
  error exit_error(int status) const;

  io::io_loop& loop_;
  core::limits limits_;
  busy_limits busy_;
  std::string label_;
  log_sink sink_;
  event_handler events_;

  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, pending_entry> pending_;  // guarded by mu_
  std::deque<queued> queue_;                                  // guarded by mu_
  std::size_t queued_requests_ = 0;                           // guarded by mu_
  std::size_t inflight_ = 0;                                  // guarded by mu_
  std::deque<outgoing> out_;                                  // guarded by mu_
  std::size_t out_bytes_ = 0;                                 // guarded by mu_
  bool is_busy_ = false;                                      // guarded by mu_
  bool gate_open_ = false;                                    // guarded by mu_
  bool stopping_ = false;                                     // guarded by mu_
  bool closed_ = false;                                       // guarded by mu_
  bool writer_armed_ = false;                                 // guarded by mu_
  bool close_after_flush_ = false;                            // guarded by mu_
  bool write_failed_ = false;                                 // guarded by mu_
  int to_child_ = -1;                                         // guarded by mu_
  int interrupt_fd_ = -1;                                     // guarded by mu_
  int dump_fd_ = -1;                                          // guarded by mu_
  std::optional<error> exit_reason_;                          // guarded by mu_
  std::unordered_set<std::uint64_t> unacknowledged_;          // guarded by mu_
  std::uint64_t busy_transitions_ = 0;                        // guarded by mu_
  std::uint64_t overloaded_ = 0;                              // guarded by mu_
  std::uint64_t served_ = 0;                                  // guarded by mu_

  // I/O thread only.
  process::spawned_process proc_;
  protocol::frame_reader reader_;
  std::shared_ptr<io::fd_watcher> w_read_, w_write_, w_out_, w_err_, w_exit_;
  std::string out_partial_, err_partial_;
  std::deque<std::string> recent_stderr_;  // last lines, quoted when the start fails
  bool ready_seen_ = false;
  bool read_paused_ = false;  // too many host messages outstanding
  bool violated_ = false;     // a protocol violation: nothing more is read

  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<std::uint64_t> next_env_id_{1};
  std::atomic<int> pid_{0};
  std::atomic<bool> reaped_{false};
  std::atomic<std::uint64_t> bytes_out_{0}, bytes_in_{0};
  std::atomic<std::int64_t> host_outstanding_{0};
  std::atomic<std::uint64_t> host_handled_{0};
};

} // namespace pyvisor::interp
