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

/// What a connection reports to its owner. Every callback runs on the I/O thread, never with
/// the connection's lock held (so a callback may call back into the connection). After
/// `exited` nothing more is reported.
struct connection_events {
  /// One complete frame body; `owner`, when set, keeps a large body's buffer alive. Return
  /// false to stop reading (the owner found a protocol violation and ends the process).
  std::function<bool(std::string_view body, std::shared_ptr<const char[]> owner)> frame;
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

  // I/O thread only.
  process::spawned_process proc_;
  protocol::frame_reader reader_;
  std::shared_ptr<fd_watcher> w_read_, w_write_, w_out_, w_err_, w_exit_, w_dump_;
  line_splitter out_lines_, err_lines_;
  bool stopped_reading_ = false;
  bool paused_ = false;
  bool batched_ = false;  // I/O thread only: frames were collected during on_readable

  std::atomic<int> pid_{0};
  std::atomic<std::uint64_t> heartbeats_{0};
  std::atomic<std::uint64_t> bytes_out_{0}, bytes_in_{0};
  std::size_t max_frame_;
};

} // namespace pyvisor::io
