#include "io/connection.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pyvisor::io {

namespace {

// glibc 2.36 knows the idtype only in <linux/wait.h>, which clashes with <sys/wait.h>.
constexpr auto p_pidfd = static_cast<idtype_t>(3);

// Through syscall(): glibc 2.36's <sys/pidfd.h> lacks C linkage for C++.
int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

bool readable_now(int fd, short* revents = nullptr) {
  if (fd < 0)
    return false;
  pollfd p{fd, POLLIN, 0};
  bool r = ::poll(&p, 1, 0) == 1;
  if (revents)
    *revents = p.revents;
  return r;
}

} // namespace

connection::connection(io_loop& loop, std::size_t max_frame_bytes, watermarks w,
                       connection_events ev)
  : loop_(loop), marks_(w), ev_(std::move(ev)), reader_(max_frame_bytes),
    max_frame_(max_frame_bytes) {
  if (marks_.low > marks_.high)
    marks_.low = marks_.high;
}

connection::~connection() {
  // Normally everything was closed at exit; this covers a process that never attached.
  process::close_fds(proc_);
  if (python_pidfd_ >= 0)
    ::close(python_pidfd_);
}

// ---- writing (any thread) -------------------------------------------------------------------

connection::write_result connection::write(std::string frame) {
  std::lock_guard<std::mutex> g{mu_};
  if (write_failed_ || reaped_ || close_after_flush_)
    return write_result::closed;
  write_locked(std::move(frame));
  return write_result::ok;
}

bool connection::busy() const {
  // Written under mu_ by the writer; the admission check reads it under the table's lock, and
  // a drain that races with it is followed by `drained`, which pumps the queue again.
  return is_busy_.load(std::memory_order_relaxed);
}

namespace {
// The connection whose input the I/O thread is handling right now: frames written to it from
// there (completions that send the next request, pipelined) are collected and leave in one
// writev when the read is done, instead of one write() each.
thread_local const connection* batching = nullptr;
} // namespace

void connection::write_locked(std::string frame) {
  if (batching == this && to_child_ >= 0) {
    out_bytes_ += frame.size();
    out_.push_back({std::move(frame), 0});
    batched_ = true;
  } else if (out_.empty() && to_child_ >= 0) {
    auto n = ::write(to_child_, frame.data(), frame.size());
    if (n == static_cast<ssize_t>(frame.size())) {
      bytes_out_.fetch_add(frame.size(), std::memory_order_relaxed);
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) {
        write_failed_locked(errno);
        return;
      }
      n = 0;
    }
    bytes_out_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    out_bytes_ += frame.size() - static_cast<std::size_t>(n);
    out_.push_back({std::move(frame), static_cast<std::size_t>(n)});
    arm_writer_locked();
  } else {
    out_bytes_ += frame.size();
    out_.push_back({std::move(frame), 0});
    if (to_child_ >= 0)
      arm_writer_locked();
  }
  if (!is_busy_ && out_bytes_ > marks_.high) {
    is_busy_ = true;
    ++busy_transitions_;
  }
}

void connection::arm_writer_locked() {
  if (writer_armed_)
    return;
  writer_armed_ = true;
  loop_.post([self = shared_from_this()] {
    if (self->w_write_)
      self->w_write_->start(UV_WRITABLE);
  });
}

bool connection::flush_locked() {
  while (!out_.empty() && to_child_ >= 0) {
    iovec iov[64];
    int cnt = 0;
    for (auto i = out_.begin(); i != out_.end() && cnt < 64; ++i, ++cnt) {
      iov[cnt].iov_base = i->frame.data() + i->offset;
      iov[cnt].iov_len = i->frame.size() - i->offset;
    }
    auto n = ::writev(to_child_, iov, cnt);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN)
        write_failed_locked(errno);
      break;
    }
    bytes_out_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    auto left = static_cast<std::size_t>(n);
    out_bytes_ -= left;
    while (left > 0) {
      auto& f = out_.front();
      auto rest = f.frame.size() - f.offset;
      if (left >= rest) {
        left -= rest;
        out_.pop_front();
      } else {
        f.offset += left;
        left = 0;
      }
    }
  }
  bool drained = false;
  if (is_busy_ && out_bytes_ <= marks_.low) {
    is_busy_ = false;
    drained = true;
  }
  if (out_.empty() && close_after_flush_ && to_child_ >= 0) {
    // EOF tells the runner to finish even if it missed the shutdown frame. The fd is closed on
    // the I/O thread after its watcher: closing it under a live uv_poll would let that poll's
    // later close remove a *reused* fd number (another interpreter's pidfd) from epoll.
    to_child_ = -1;
    loop_.post([self = shared_from_this()] { self->close_request_pipe(); });
  }
  return drained;
}

void connection::close_after_flush() {
  std::lock_guard<std::mutex> g{mu_};
  if (close_after_flush_)
    return;
  close_after_flush_ = true;
  if (out_.empty())
    flush_locked();
}

void connection::close_request_pipe() {
  if (proc_.to_child < 0)
    return;
  if (w_write_) {
    w_write_->close();
    w_write_.reset();
  }
  ::close(proc_.to_child);
  proc_.to_child = -1;
}

void connection::on_writable() {
  bool drained;
  {
    std::lock_guard<std::mutex> g{mu_};
    drained = flush_locked();
    if (out_.empty()) {
      writer_armed_ = false;
      if (w_write_)
        w_write_->stop();
    }
  }
  if (drained && ev_.drained)
    ev_.drained();
}

void connection::write_failed_locked(int err) {
  // The process may be alive (Python closed fd 3) or gone (its exit is not handled yet).
  // Nothing more can be written either way; the I/O thread tells the owner which it is.
  out_.clear();
  out_bytes_ = 0;
  to_child_ = -1;  // the fd stays open (closed with the others at exit)
  if (write_failed_)
    return;
  write_failed_ = true;
  loop_.post([self = shared_from_this(), err] {
    if (self->reaped())
      return;  // the exit was reported already
    bool ending = self->exiting();
    if (self->ev_.write_failed)
      self->ev_.write_failed(err, ending);
  });
}

bool connection::exiting() const {
  // The reaped process (the guard, or Python itself) exited.
  if (readable_now(proc_.pidfd))
    return true;
  // Python closed its end of the reply pipe (only it holds it): it is exiting, which is what
  // closed fd 3 (a write can fail before the exit is visible anywhere else).
  short rev = 0;
  if (readable_now(proc_.from_child, &rev) && (rev & POLLHUP))
    return true;
  // Python is a zombie (the guard reaps it last) or gone.
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(proc_.python()));
  std::FILE* f = std::fopen(path, "re");
  if (f == nullptr)
    return true;
  char line[512];
  bool gone = false;
  if (std::fgets(line, sizeof line, f) != nullptr) {
    const char* rp = std::strrchr(line, ')');
    gone = rp != nullptr && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
  }
  std::fclose(f);
  return gone;
}

// ---- signals (any thread) -------------------------------------------------------------------

bool connection::signal_group_locked(int sig) {
  if (reaped_ || proc_.pid <= 0)
    return false;
  if (proc_.python() != proc_.pid || proc_.status_pipe) {
    // A fork-server worker: its template reaps it only after the status is readable.
    // With a guard: Python is the guard's child. Once the guard exited everything below it
    // is dead (and Python's pid may be reused); until then the group id is Python's, held by
    // Python or by its zombie, which the guard reaps only after killing the group.
    if (readable_now(proc_.pidfd))
      return false;
  }
  // Without a guard the pid is our child's: it is not reaped (checked under the lock the reap
  // takes), so the group id cannot have been reused.
  return ::kill(-proc_.python(), sig) == 0;
}

bool connection::signal_group(int sig) {
  std::lock_guard<std::mutex> g{mu_};
  return signal_group_locked(sig);
}

bool connection::interrupt(const std::vector<std::uint64_t>& ids) {
  std::lock_guard<std::mutex> g{mu_};
  if (reaped_ || interrupt_fd_ < 0)
    return false;
  std::string records;
  records.reserve(ids.size() * 8);
  for (auto id : ids)
    for (int i = 0; i < 8; ++i)
      records.push_back(static_cast<char>(id >> (56 - 8 * i)));
  // A few records always fit in the pipe; when the runner stopped reading them (the pipe is
  // full of stale ids) the signal still goes, and the kill bound does the rest.
  auto n = ::write(interrupt_fd_, records.data(), records.size());
  (void) n;
  if (python_pidfd_ >= 0)
    pidfd_send_signal(python_pidfd_, SIGINT);
  return true;
}

bool connection::request_stack_dump() {
  std::lock_guard<std::mutex> g{mu_};
  if (reaped_ || proc_.dump < 0 || python_pidfd_ < 0)
    return false;
  return pidfd_send_signal(python_pidfd_, SIGUSR2) == 0;
}

bool connection::read_stack_dump(std::string& out) {
  constexpr std::size_t max_dump = 64 * 1024;
  std::lock_guard<std::mutex> g{mu_};
  if (dump_buf_.empty() || out.size() >= max_dump)
    return false;
  out.append(dump_buf_, 0, max_dump - out.size());
  dump_buf_.clear();
  return true;
}

void connection::on_dump() {
  constexpr std::size_t max_dump = 64 * 1024;
  char buf[4096];
  for (int i = 0; i < 16 && proc_.dump >= 0; ++i) {
    auto n = ::read(proc_.dump, buf, sizeof buf);
    if (n > 0) {
      std::string text;
      std::uint64_t beats = 0;
      for (ssize_t k = 0; k < n; ++k) {
        if (buf[k] == '\0')
          ++beats;
        else
          text.push_back(buf[k]);
      }
      if (beats > 0)
        heartbeats_.fetch_add(beats, std::memory_order_relaxed);
      if (!text.empty()) {
        std::lock_guard<std::mutex> g{mu_};
        if (dump_buf_.size() < max_dump)
          dump_buf_.append(text, 0, max_dump - dump_buf_.size());
      }
      if (static_cast<std::size_t>(n) < sizeof buf)
        break;
    } else if (n == 0) {
      if (w_dump_)
        w_dump_->stop();
      break;
    } else if (errno != EINTR) {
      break;
    }
  }
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
  w_read_ = fd_watcher::make(loop_, p.from_child, [weak](int, int) {
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
  batching = this;
  read_some();
  batching = nullptr;
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
    auto [p, n] = reader_.write_area();
    if (n == 0) {  // a complete large frame is waiting: take it first
      read_frames();
      continue;
    }
    auto r = ::read(proc_.from_child, p, n);
    if (r > 0) {
      reader_.commit(static_cast<std::size_t>(r));
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
  reader_.release_if_empty();
}

void connection::read_frames() {
  while (!stopped_reading_) {
    auto r = reader_.next();
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
    if (ev_.frame && !ev_.frame(r.body, std::move(r.owner)))
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

void connection::on_exit() {
  int status = 0;
  if (proc_.status_pipe) {
    // A fork-server worker: its template killed the group and wrote the wait status.
    auto got = ::read(proc_.pidfd, &status, sizeof status);
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
      return;  // spurious: the watcher fires again
    if (got != static_cast<ssize_t>(sizeof status))
      status = SIGKILL;  // the template died first: the worker died with it (PDEATHSIG)
  } else {
    siginfo_t info{};
    // The child stays a zombie (WNOWAIT): its pid, and so its process group id, cannot be
    // reused until the reap below.
    if (::waitid(p_pidfd, static_cast<id_t>(proc_.pidfd), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        info.si_pid == 0)
      return;  // spurious, or EINTR: the watcher fires again
    // With the guard every descendant is gone already. Without one, the group goes too: no
    // orphans.
    if (proc_.python() == proc_.pid)
      ::kill(-proc_.pid, SIGKILL);
  }
  // Replies written before the exit are still in the pipe: deliver them first.
  if (proc_.from_child >= 0 && !stopped_reading_) {
    paused_ = false;
    for (int i = 0; i < 1024 && proc_.from_child >= 0 && !stopped_reading_; ++i) {
      auto [p, n] = reader_.write_area();
      if (n == 0) {
        read_frames();
        continue;
      }
      auto k = ::read(proc_.from_child, p, n);
      if (k <= 0)
        break;
      reader_.commit(static_cast<std::size_t>(k));
      bytes_in_.fetch_add(static_cast<std::uint64_t>(k), std::memory_order_relaxed);
      read_frames();
    }
  }
  if (proc_.out >= 0)
    on_log(proc_.out, w_out_, out_lines_, log_source::python_stdout);
  if (proc_.err >= 0)
    on_log(proc_.err, w_err_, err_lines_, log_source::python_stderr);
  auto flush_line = [this](log_source src) {
    return [this, src](std::string_view line) {
      if (ev_.line)
        ev_.line(src, line);
    };
  };
  out_lines_.finish(flush_line(log_source::python_stdout));
  err_lines_.finish(flush_line(log_source::python_stderr));
  if (proc_.dump >= 0)
    on_dump();
  for (auto* w : {&w_read_, &w_write_, &w_out_, &w_err_, &w_exit_, &w_dump_})
    if (*w)
      (*w)->close();
  {
    std::lock_guard<std::mutex> g{mu_};
    if (!proc_.status_pipe)
      ::waitpid(proc_.pid, &status, 0);  // exited (WNOWAIT above): does not block
    reaped_ = true;
    to_child_ = interrupt_fd_ = -1;
    out_.clear();
    out_bytes_ = 0;
    if (python_pidfd_ >= 0) {
      ::close(python_pidfd_);
      python_pidfd_ = -1;
    }
    process::close_fds(proc_);
  }
  auto ev = std::move(ev_);
  ev_ = connection_events{};  // releases the owner's callbacks (and what they hold)
  if (ev.exited)
    ev.exited(status);
}

} // namespace pyvisor::io
