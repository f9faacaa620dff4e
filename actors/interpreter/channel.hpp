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
#include <variant>

#include "io/io_loop.hpp"
#include "process/spawn.hpp"
#include "protocol/frame_reader.hpp"
#include "protocol/limits.hpp"
#include "protocol/message.hpp"
#include "pyvisor/expected.hpp"
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

/// Events the channel reports to its owner (the interpreter actor), from the I/O thread.
using channel_event = std::variant<ready_info, exit_info>;

/// The connection to one Python process: request table, ordered writer, frame reader, log
/// forwarding and reaping. It is the hot path, so it is not an actor: a caller thread encodes
/// its frame and writes it itself when nothing is queued ahead (order is kept by one mutex),
/// and the I/O thread completes the caller straight from the request table. So a blocking
/// call costs exactly one wake-up of the caller; lifecycle and policy stay in the actor.
///
/// Thread-safety: every public function may be called from any thread, except `attach` and
/// the watcher callbacks, which run on the I/O thread.
class channel : public std::enable_shared_from_this<channel> {
public:
  using completion = std::function<void(expected<value>)>;
  using event_handler = std::function<void(channel_event)>;

  channel(io::io_loop& loop, protocol::limits lim, std::string label, log_sink sink);
  ~channel();

  /// Sets who receives ready/exit events. Call before attach.
  void on_event(event_handler h) { events_ = std::move(h); }

  /// Takes over a spawned process: watches its pipes and its pidfd. I/O thread only.
  void attach(process::spawned_process p);

  /// A fresh request id (never 0).
  std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  /// Registers `cb` under `id`, then writes `frame` (or holds it until open_gate() when the
  /// interpreter is not ready yet). `cb` runs exactly once: with the response, or with the
  /// error that ended the request (exit, stop, abandon does NOT call it).
  /// `priority` frames (the init script) pass the gate.
  void submit(std::uint64_t id, std::string frame, completion cb, bool priority = false);

  /// Forgets request `id` (its completion will not run; a late reply is dropped) and tells the
  /// runner to cancel it if it was already sent. Returns false when it was no longer pending
  /// (its completion ran or is running).
  bool abandon(std::uint64_t id);

  /// Lets held and new requests through (the interpreter became ready).
  void open_gate();

  /// Stop requested: new requests fail with interpreter_down, held ones too; a `shutdown`
  /// notification is sent after what is queued and then the write end is closed.
  void begin_stop();

  /// Fails every pending and held request with `e` (used for init failures).
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

  /// Counters for stats.
  std::uint64_t bytes_out() const noexcept { return bytes_out_.load(); }
  std::uint64_t bytes_in() const noexcept { return bytes_in_.load(); }
  std::size_t pending_count() const;

private:
  struct outgoing {
    std::string frame;
    std::size_t offset = 0;
  };
  struct held {
    std::uint64_t id;
    std::string frame;
  };

  void enqueue_locked(std::string frame);
  void arm_writer_locked();
  void flush_locked();
  void on_writable();
  void on_readable();
  void on_log_readable(int& fd, std::shared_ptr<io::fd_watcher>& w, std::string& partial,
                       log_source src);
  void emit_line(log_source src, std::string_view line);
  void process_frames();
  void dispatch(protocol::message m);
  void violation(errc code, std::string what);
  void on_exit();
  std::deque<std::pair<std::uint64_t, completion>> take_all_locked();
  error exit_error(int status) const;

  io::io_loop& loop_;
  protocol::limits limits_;
  std::string label_;
  log_sink sink_;
  event_handler events_;

  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, completion> pending_;  // guarded by mu_
  std::deque<held> held_;                                    // guarded by mu_
  std::deque<outgoing> out_;                                 // guarded by mu_
  bool gate_open_ = false;                                   // guarded by mu_
  bool stopping_ = false;                                    // guarded by mu_
  bool closed_ = false;                                      // guarded by mu_
  bool writer_armed_ = false;                                // guarded by mu_
  bool close_after_flush_ = false;                           // guarded by mu_
  int to_child_ = -1;                                        // guarded by mu_
  std::optional<error> exit_reason_;                         // guarded by mu_

  // I/O thread only.
  process::spawned_process proc_;
  protocol::frame_reader reader_;
  std::shared_ptr<io::fd_watcher> w_read_, w_write_, w_out_, w_err_, w_exit_;
  std::string out_partial_, err_partial_;
  bool ready_seen_ = false;

  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<int> pid_{0};
  std::atomic<bool> reaped_{false};
  std::atomic<std::uint64_t> bytes_out_{0}, bytes_in_{0};
};

} // namespace pyvisor::interp
