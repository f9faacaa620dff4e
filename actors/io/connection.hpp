#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "io/io_loop.hpp"
#include "io/line_splitter.hpp"
#include "process/spawn.hpp"
#include "protocol/frame_reader.hpp"
#include "pyvisor/errc.hpp"
#include "pyvisor/log_record.hpp"

namespace pyvisor::io {

class thread_wake;

/// What the owner did with a frame (connection_events::frame).
enum class frame_verdict : std::uint8_t {
  taken,     ///< handled
  stop,      ///< a protocol violation: the owner ends the process, nothing more is read
  not_here,  ///< (only with `only` set) not the reply the reading thread waits for: the I/O
             ///< thread is to handle it (it gets it again, with `only` 0)
};

/// What a connection reports to its owner. Every callback runs on the I/O thread, never with
/// the connection's lock held (so a callback may call back into the connection), except
/// `frame` with `only` set (see read_reply_here). After `exited` nothing more is reported.
struct connection_events {
  /// One complete frame body; `owner`, when set, keeps a large body's buffer alive. `only`:
  /// 0 on the I/O thread; otherwise the call runs on a thread that waits for the reply to
  /// request `only` (read_reply_here), and handles that reply alone (else `not_here`).
  std::function<frame_verdict(std::string_view body, std::shared_ptr<const char[]> owner,
                              std::uint64_t only)>
    frame;
  /// The byte stream broke framing (a frame above the limit, an empty frame): nothing more is
  /// read. The owner ends the process.
  std::function<void(errc code, std::string what)> violation;
  /// One line the child wrote to its stdout or stderr.
  std::function<void(log_source src, std::string_view line)> line;
  /// The write backlog fell to low water after it had gone above high water.
  std::function<void()> drained;
  /// A write failed with `err`. `exiting`: the process is ending anyway (its exit follows and
  /// tells why); otherwise it closed its request pipe while alive.
  std::function<void(int err, bool exiting)> write_failed;
  /// The process exited and was reaped (`status` as from waitpid). Replies it wrote before
  /// its exit were reported first. Every fd is closed.
  std::function<void(int status)> exited;
};

/// One Python process's pipes, as a transport that knows nothing of requests (the split of
/// asyncio's transport/protocol): an ordered writer that any thread may write into, frame
/// splitting, stdout/stderr lines, the interrupt and stack-dump pipes, signals and the exit.
///
/// Writing: `write()` writes at once when nothing is queued ahead (the caller's own write(2),
/// so a request costs no wake-up of the I/O thread), otherwise appends to the backlog that the
/// I/O thread flushes; order is kept by one mutex. Above `high_water` bytes of backlog the
/// connection is *busy* until it is back at `low_water` (then `drained`).
///
/// Signals and reaping cannot race: signals are sent under the same lock as the reap, after
/// checking it has not happened. The exit is handled in this order: `waitid(WNOWAIT)` (the
/// exited child keeps its pid), the child's process group is killed (no guard), the replies
/// and log lines left in the pipes are read, then the child is reaped.
///
/// Reading: the I/O thread reads the reply pipe, except while a thread that blocks until one
/// reply comes lends it (read_reply_here): that thread then reads its reply itself (no relay
/// through the I/O thread, no cross-thread wake-up), and hands the pipe back for anything else.
///
/// Thread-safety: `attach`, `stop_reading` and `pause_reading` run on the I/O thread; the rest
/// from any thread.
class connection : public std::enable_shared_from_this<connection> {
public:
  struct watermarks {
    std::size_t high = std::size_t{8} << 20;
    std::size_t low = std::size_t{4} << 20;
  };

  connection(io_loop& loop, std::size_t max_frame_bytes, watermarks w, connection_events ev);
  ~connection();

  /// Takes over a spawned process. I/O thread only.
  void attach(process::spawned_process p);

  enum class write_result : std::uint8_t { ok, closed };

  /// Writes `frame` (or queues it behind earlier ones). `closed`: the request pipe is closed
  /// (the process ended, a write failed, or close_after_flush ran); nothing was written.
  write_result write(std::string frame);

  /// Whether the backlog is above high water (and not yet back at low water).
  bool busy() const;

  /// Writes what is queued, then closes the request pipe (the runner reads EOF).
  void close_after_flush();

  /// Sends `sig` to the Python process's group; a no-op once the process was reaped (or, with
  /// a guard, once the guard exited: everything below it is dead then). Returns whether a
  /// signal was sent.
  bool signal_group(int sig);

  /// Writes the 8-byte ids to the interrupt pipe (child fd 5), then SIGINT to the runner.
  /// False without an interrupt pipe or after the exit.
  bool interrupt(const std::vector<std::uint64_t>& ids);

  /// SIGUSR2 to the runner: faulthandler writes every thread's stack to the dump pipe (fd 6).
  bool request_stack_dump();

  /// Moves what arrived on the dump pipe to `out` (at most 64 KiB in all); whether there was
  /// any. The I/O thread reads the pipe as it fills (heartbeats travel on it too).
  bool read_stack_dump(std::string& out);

  /// Heartbeats received so far (NUL bytes the runner's watchdog thread writes to the dump
  /// pipe every --heartbeat-ms).
  std::uint64_t heartbeats() const noexcept { return heartbeats_.load(std::memory_order_relaxed); }

  /// Drops the callbacks (and what they hold) of a connection that was never attached: no
  /// exit will come to release them. I/O thread only.
  void release_events() { ev_ = connection_events{}; }

  /// Stops reading frames for good (after a protocol violation). I/O thread only.
  void stop_reading();

  /// Holds / resumes reading frames (flow control by the owner). `pause_reading` runs on the
  /// I/O thread (from a frame callback); `resume_reading` from any thread.
  void pause_reading();
  void resume_reading();

  /// For a thread that blocks until request `id` is answered, with nothing else in flight: it
  /// takes the reply pipe from the I/O thread (whose watch on it is disarmed meanwhile) and
  /// reads frames itself, handing each to `frame` with `only = id`, until `answered()` holds
  /// (the reply was handled here, or another thread completed the request and signalled
  /// `wake`). Anything else it reads (another frame, EOF, an error), and any need of the I/O
  /// thread for the pipe (the exit, stop_reading), hands the pipe back at once; so does a
  /// frame that is not `id`'s reply, which the I/O thread then handles in order. False when
  /// the pipe could not be taken (the I/O thread or another thread is reading, reading is
  /// paused or stopped, the process ended): the caller waits for the I/O thread as before.
  /// `wake` is the calling thread's; it may be left signalled (drain it before polling).
  bool read_reply_here(std::uint64_t id, thread_wake& wake, const std::function<bool()>& answered);

  /// Whether the process is ending: the guard exited, the reply pipe hung up, or Python is a
  /// zombie. I/O thread only.
  bool exiting() const;

  int pid() const noexcept { return pid_.load(); }
  bool reaped() const;

  struct counters {
    std::size_t queued_bytes = 0;
    std::uint64_t busy_transitions = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
  };
  counters stats() const;

private:
  struct outgoing {
    std::string frame;
    std::size_t offset = 0;
  };

  void write_locked(std::string frame);
  void arm_writer_locked();
  bool flush_locked();  // returns whether the backlog just drained below low water
  void write_failed_locked(int err);
  void on_writable();
  void on_readable();
  void read_some();
  bool claim_reader();
  void take_back();
  void release_reader();
  void kick_lender();
  bool arm_reader(bool on);
  void read_frames();
  void on_log(int& fd, std::shared_ptr<fd_watcher>& w, line_splitter& split, log_source src);
  void on_exit();
  void on_dump();
  void close_request_pipe();
  bool signal_group_locked(int sig);

  io_loop& loop_;
  watermarks marks_;
  connection_events ev_;

  mutable std::mutex mu_;
  std::deque<outgoing> out_;  // guarded by mu_
  std::size_t out_bytes_ = 0;  // guarded by mu_
  std::atomic<bool> is_busy_{false};  // written under mu_; read without it (admission)
  bool writer_armed_ = false;  // guarded by mu_
  bool close_after_flush_ = false;  // guarded by mu_
  bool write_failed_ = false;  // guarded by mu_
  bool reaped_ = false;        // guarded by mu_
  int to_child_ = -1;          // guarded by mu_ (-1: closed or failed)
  int interrupt_fd_ = -1;      // guarded by mu_
  std::string dump_buf_;       // guarded by mu_
  int python_pidfd_ = -1;      // guarded by mu_ (signals to the runner itself)
  std::uint64_t busy_transitions_ = 0;  // guarded by mu_

  // The reply pipe's reader: who may read from_child and touch reader_ (reader_state).
  // free: the I/O thread when it is readable; lent: a thread in read_reply_here; loop: the
  // I/O thread (inside one of its callbacks, or handed back by a lender: see take_back);
  // closed: nobody (the exit was handled, or never attached).
  enum reader_state : int { reader_free, reader_lent, reader_loop, reader_closed };
  std::atomic<int> reader_{reader_closed};
  std::atomic<bool> reader_wanted_{false};  // the I/O thread wants the pipe back from a lender
  std::mutex lend_mu_;
  thread_wake* lender_ = nullptr;  // guarded by lend_mu_: the lender's wake
  // Written by a lender before it hands back (reader_ = loop), read by the I/O thread after.
  bool handed_back_ = false;
  std::string deferred_copy_;  // a frame the lender did not handle (not_here), for the loop
  std::string_view deferred_;
  std::shared_ptr<const char[]> deferred_owner_;
  bool has_deferred_ = false;
  int watch_fd_ = -1;  // an epoll set holding from_child, which w_read_ watches: a lender
                       // disarms it (epoll_ctl is thread-safe, uv handles are not)

  // Whoever holds the reader (see reader_).
  protocol::frame_reader frames_;
  std::atomic<bool> stopped_reading_{false};
  std::atomic<bool> paused_{false};

  // I/O thread only.
  process::spawned_process proc_;
  std::shared_ptr<fd_watcher> w_read_, w_write_, w_out_, w_err_, w_exit_, w_dump_;
  line_splitter out_lines_, err_lines_;
  bool batched_ = false;  // frames were collected during on_readable
  bool read_parked_ = false;  // w_read_ stopped while lent: restarted when the pipe is back
  bool exit_parked_ = false;  // w_exit_ likewise

  std::atomic<int> pid_{0};
  std::atomic<std::uint64_t> heartbeats_{0};
  std::atomic<std::uint64_t> bytes_out_{0}, bytes_in_{0};
  std::size_t max_frame_;
};

} // namespace pyvisor::io
