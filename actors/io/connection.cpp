// io::connection: construction, attaching a process, reading frames and log lines (writing:
// connection_write.cpp; signals, stack dumps and the exit: connection_process.cpp).
#include "io/connection.hpp"
#include "io/connection_detail.hpp"

#include <cerrno>
#include <cstring>
#include <sys/epoll.h>
#include <unistd.h>

namespace pyvisor::io {

using namespace detail;


connection::connection(io_loop& loop, std::size_t max_frame_bytes, watermarks w,
                       connection_events ev)
  : loop_(loop), marks_(w), ev_(std::move(ev)), frames_(max_frame_bytes),
    max_frame_(max_frame_bytes) {
  if (marks_.low > marks_.high)
    marks_.low = marks_.high;
}

connection::~connection() {
  // Normally everything was closed at exit; this covers a process that never attached.
  process::close_fds(proc_);
  if (python_pidfd_ >= 0)
    ::close(python_pidfd_);
  if (watch_fd_ >= 0)
    ::close(watch_fd_);
}

bool connection::reaped() const {
  std::lock_guard<std::mutex> g{mu_};
  return reaped_;
}

connection::counters connection::stats() const {
  std::lock_guard<std::mutex> g{mu_};
  counters c;
  c.queued_bytes = out_bytes_;
  c.busy_transitions = busy_transitions_;
  c.bytes_in = bytes_in_.load();
  c.bytes_out = bytes_out_.load();
  return c;
}

// ---- I/O thread ------------------------------------------------------------------------------

void connection::attach(process::spawned_process p) {
  {
    std::lock_guard<std::mutex> g{mu_};  // signal_group reads the pids from any thread
    proc_ = p;
  }
  pid_.store(p.python());
  std::weak_ptr<connection> weak = shared_from_this();
  // The I/O thread watches the reply pipe through an epoll set of its own, which a thread
  // that reads its own reply disarms (read_reply_here); without one, nobody lends the pipe.
  watch_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (watch_fd_ >= 0) {
    epoll_event e{};
    e.events = EPOLLIN;
    if (::epoll_ctl(watch_fd_, EPOLL_CTL_ADD, p.from_child, &e) != 0) {
      ::close(watch_fd_);
      watch_fd_ = -1;
    }
  }
  w_read_ = fd_watcher::make(loop_, watch_fd_ >= 0 ? watch_fd_ : p.from_child, [weak](int, int) {
    if (auto self = weak.lock())
      self->on_readable();
  });
  w_write_ = fd_watcher::make(loop_, p.to_child, [weak](int, int) {
    if (auto self = weak.lock())
      self->on_writable();
  });
  if (p.out >= 0) {
    w_out_ = fd_watcher::make(loop_, p.out, [weak](int, int) {
      if (auto self = weak.lock())
        self->on_log(self->proc_.out, self->w_out_, self->out_lines_, log_source::python_stdout);
    });
    w_out_->start(UV_READABLE);
  }
  w_err_ = fd_watcher::make(loop_, p.err, [weak](int, int) {
    if (auto self = weak.lock())
      self->on_log(self->proc_.err, self->w_err_, self->err_lines_, log_source::python_stderr);
  });
  w_err_->start(UV_READABLE);
  // The exit watcher keeps the connection alive until the process is reaped.
  w_exit_ = fd_watcher::make(loop_, p.pidfd, [self = shared_from_this()](int, int) {
    self->on_exit();
  });
  w_exit_->start(UV_READABLE);
  if (p.dump >= 0) {
    w_dump_ = fd_watcher::make(loop_, p.dump, [weak](int, int) {
      if (auto self = weak.lock())
        self->on_dump();
    });
    w_dump_->start(UV_READABLE);
  }
  w_read_->start(UV_READABLE);
  // The store publishes proc_, frames_ and watch_fd_ to lenders (without an epoll set they
  // give the pipe back at once: read_reply_here).
  reader_.store(reader_free);
  std::lock_guard<std::mutex> g{mu_};
  to_child_ = write_failed_ ? -1 : p.to_child;
  interrupt_fd_ = p.interrupt;
  // Python is our grandchild (below the guard) and alive: the guard reaps it only after it
  // exited, so this pidfd names the runner (and stays valid after its pid is reused).
  python_pidfd_ = pidfd_open(p.python());
  if (p.status_pipe && python_pidfd_ >= 0 && readable_now(p.pidfd)) {
    // A fork-server worker that exited already: its template may have reaped it, so the pid
    // may name another process by now. Opened before the check, the pidfd is safe otherwise.
    ::close(python_pidfd_);
    python_pidfd_ = -1;
  }
  if (!out_.empty())
    arm_writer_locked();
  else if (close_after_flush_)
    flush_locked();
}

void connection::stop_reading() {
  stopped_reading_ = true;
  if (w_read_)
    w_read_->stop();
  kick_lender();  // a lender hands the pipe back (and reads nothing more)
}

void connection::pause_reading() {
  if (paused_ || stopped_reading_)
    return;
  paused_ = true;
  if (w_read_)
    w_read_->stop();
}

void connection::resume_reading() {
  loop_.post([weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self || !self->paused_)
      return;
    self->paused_ = false;
    if (self->w_read_ && self->proc_.from_child >= 0 && !self->stopped_reading_)
      self->w_read_->start(UV_READABLE);
  });
}

void connection::on_readable() {
  if (!claim_reader()) {
    // Lent (the lender's reply pipe is disarmed, so this is its hang-up): the lender hands
    // the pipe back and take_back() watches again.
    w_read_->stop();
    read_parked_ = true;
    return;
  }
  take_back();
  batching = this;
  read_some();
  batching = nullptr;
  release_reader();
  if (!batched_)
    return;  // nothing was written while reading: no lock taken
  batched_ = false;
  bool drained = false;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (!out_.empty() && !writer_armed_) {
      drained = flush_locked();
      if (!out_.empty())
        arm_writer_locked();
    }
  }
  if (drained && ev_.drained)
    ev_.drained();
}

void connection::read_some() {
  // A bounded number of reads per wake-up keeps the loop fair to other interpreters.
  for (int i = 0; i < 8 && proc_.from_child >= 0 && !paused_ && !stopped_reading_; ++i) {
    auto [p, n] = frames_.write_area();
    if (n == 0) {  // a complete large frame is waiting: take it first
      read_frames();
      continue;
    }
    auto r = ::read(proc_.from_child, p, n);
    if (r > 0) {
      frames_.commit(static_cast<std::size_t>(r));
      bytes_in_.fetch_add(static_cast<std::uint64_t>(r), std::memory_order_relaxed);
      read_frames();
      if (static_cast<std::size_t>(r) < n)
        break;
    } else if (r == 0) {
      // EOF: the runner closed its end (it exits). The pidfd watcher does the rest.
      w_read_->stop();
      break;
    } else {
      if (errno != EINTR)
        break;
    }
  }
  // Nothing half-read: the read buffer goes back to the I/O thread's spare (an idle
  // interpreter holds none; the next reader on this thread takes it again).
  frames_.release_if_empty();
}

void connection::read_frames() {
  while (!stopped_reading_) {
    auto r = frames_.next();
    using st = protocol::frame_reader::status;
    if (r.st == st::need_more)
      return;
    if (r.st == st::too_large || r.st == st::empty_frame) {
      stop_reading();
      if (ev_.violation) {
        if (r.st == st::too_large)
          ev_.violation(errc::frame_too_large,
                        "the runner sent a frame of " + std::to_string(r.declared) +
                          " bytes, above max_frame_bytes (" + std::to_string(max_frame_) + ")");
        else
          ev_.violation(errc::protocol_error, "the runner sent an empty frame");
      }
      return;
    }
    if (ev_.frame && ev_.frame(r.body, std::move(r.owner), 0) == frame_verdict::stop)
      stop_reading();
  }
}

void connection::on_log(int& fd, std::shared_ptr<fd_watcher>& w, line_splitter& split,
                        log_source src) {
  char buf[16384];
  auto emit = [&](std::string_view line) {
    if (ev_.line)
      ev_.line(src, line);
  };
  for (int i = 0; i < 8 && fd >= 0; ++i) {
    auto r = ::read(fd, buf, sizeof buf);
    if (r > 0) {
      split.feed(std::string_view{buf, static_cast<std::size_t>(r)}, emit);
      if (static_cast<std::size_t>(r) < sizeof buf)
        break;
    } else if (r == 0) {
      split.finish(emit);
      if (w)
        w->stop();
      break;
    } else if (errno != EINTR) {
      break;
    }
  }
}

} // namespace pyvisor::io
