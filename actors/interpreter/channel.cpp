#include "interpreter/channel.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pyvisor::interp {

namespace {

constexpr std::size_t max_log_line = 64 * 1024;

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string{"SIG"} + abbrev : std::to_string(sig);
}

} // namespace

channel::channel(io::io_loop& loop, protocol::limits lim, std::string label, log_sink sink)
  : loop_(loop),
    limits_(lim),
    label_(std::move(label)),
    sink_(std::move(sink)),
    reader_(lim.max_frame_bytes) {
}

channel::~channel() {
  // Normally everything was closed at exit; this covers a process that never attached.
  process::close_fds(proc_);
  if (to_child_ >= 0 && to_child_ != proc_.to_child)
    ::close(to_child_);
}

// ---- writing (any thread) -------------------------------------------------------------------

void channel::submit(std::uint64_t id, std::string frame, completion cb, bool priority) {
  std::unique_lock<std::mutex> lk{mu_};
  if (closed_ || (stopping_ && !priority)) {
    auto e = closed_ && exit_reason_ ? *exit_reason_
                                     : make_error(errc::interpreter_down,
                                                  "interpreter '" + label_ + "' is stopped");
    lk.unlock();
    cb(std::move(e));
    return;
  }
  if (frame.size() - 4 > limits_.max_frame_bytes) {
    lk.unlock();
    cb(make_error(errc::frame_too_large, "request of " + std::to_string(frame.size() - 4) +
                                           " bytes exceeds max_frame_bytes (" +
                                           std::to_string(limits_.max_frame_bytes) + ")"));
    return;
  }
  // Registered before the write: the reply may arrive before write() returns.
  pending_.emplace(id, std::move(cb));
  if (!gate_open_ && !priority) {
    held_.push_back({id, std::move(frame)});
    return;
  }
  enqueue_locked(std::move(frame));
}

void channel::enqueue_locked(std::string frame) {
  if (out_.empty() && to_child_ >= 0) {
    auto n = ::write(to_child_, frame.data(), frame.size());
    if (n == static_cast<ssize_t>(frame.size())) {
      bytes_out_.fetch_add(frame.size(), std::memory_order_relaxed);
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR)
        return;  // EPIPE: the process is gone; its exit fails the request
      n = 0;
    }
    bytes_out_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    out_.push_back({std::move(frame), static_cast<std::size_t>(n)});
    arm_writer_locked();
    return;
  }
  out_.push_back({std::move(frame), 0});
  if (to_child_ >= 0)
    arm_writer_locked();
}

void channel::arm_writer_locked() {
  if (writer_armed_)
    return;
  writer_armed_ = true;
  loop_.post([self = shared_from_this()] {
    if (self->w_write_)
      self->w_write_->start(UV_WRITABLE);
  });
}

void channel::flush_locked() {
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
        out_.clear();  // EPIPE: the process is gone
      break;
    }
    bytes_out_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    auto left = static_cast<std::size_t>(n);
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
  if (out_.empty() && close_after_flush_ && to_child_ >= 0) {
    // EOF tells the runner to finish even if it missed the shutdown frame.
    ::close(to_child_);
    to_child_ = -1;
    proc_.to_child = -1;
  }
}

void channel::on_writable() {
  std::lock_guard<std::mutex> g{mu_};
  flush_locked();
  if (out_.empty()) {
    writer_armed_ = false;
    if (w_write_)
      w_write_->stop();
  }
}

bool channel::abandon(std::uint64_t id) {
  std::unique_lock<std::mutex> lk{mu_};
  if (pending_.erase(id) == 0)
    return false;
  for (auto i = held_.begin(); i != held_.end(); ++i) {
    if (i->id == id) {
      held_.erase(i);  // never sent: nothing to cancel
      return true;
    }
  }
  if (!closed_ && to_child_ >= 0)
    enqueue_locked(protocol::encode_cancel(id));
  return true;
}

void channel::open_gate() {
  std::lock_guard<std::mutex> g{mu_};
  if (gate_open_ || closed_)
    return;
  gate_open_ = true;
  while (!held_.empty()) {
    enqueue_locked(std::move(held_.front().frame));
    held_.pop_front();
  }
}

void channel::begin_stop() {
  std::deque<std::pair<std::uint64_t, completion>> failed;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (stopping_ || closed_)
      return;
    stopping_ = true;
    // Requests never sent fail now; requests in flight get their answer or fail at exit.
    for (auto& h : held_) {
      auto i = pending_.find(h.id);
      if (i != pending_.end()) {
        failed.emplace_back(h.id, std::move(i->second));
        pending_.erase(i);
      }
    }
    held_.clear();
    if (to_child_ >= 0) {
      enqueue_locked(protocol::encode_shutdown());
      close_after_flush_ = true;
      if (out_.empty())
        flush_locked();
    }
  }
  auto e = make_error(errc::interpreter_down, "interpreter '" + label_ + "' is stopping");
  for (auto& [id, cb] : failed)
    cb(e);
}

std::deque<std::pair<std::uint64_t, channel::completion>> channel::take_all_locked() {
  std::deque<std::pair<std::uint64_t, completion>> all;
  for (auto& [id, cb] : pending_)
    all.emplace_back(id, std::move(cb));
  pending_.clear();
  held_.clear();
  return all;
}

void channel::fail_all(const error& e) {
  std::deque<std::pair<std::uint64_t, completion>> all;
  {
    std::lock_guard<std::mutex> g{mu_};
    all = take_all_locked();
  }
  for (auto& [id, cb] : all)
    cb(e);
}

void channel::signal_group(int sig) {
  // After the reap the pid may be reused: never signal then (the exit handler already killed
  // what was left of the group).
  if (reaped_.load())
    return;
  auto pid = pid_.load();
  if (pid > 0)
    ::kill(-pid, sig);
}

void channel::set_exit_reason(error e) {
  std::lock_guard<std::mutex> g{mu_};
  if (!exit_reason_)
    exit_reason_ = std::move(e);
}

std::size_t channel::pending_count() const {
  std::lock_guard<std::mutex> g{mu_};
  return pending_.size();
}

// ---- I/O thread ------------------------------------------------------------------------------

void channel::attach(process::spawned_process p) {
  proc_ = p;
  pid_.store(p.pid);
  {
    std::lock_guard<std::mutex> g{mu_};
    if (label_.empty())
      label_ = "python-" + std::to_string(p.pid);
  }
  std::weak_ptr<channel> weak = shared_from_this();
  w_read_ = io::fd_watcher::make(loop_, p.from_child, [weak](int, int) {
    if (auto self = weak.lock())
      self->on_readable();
  });
  w_write_ = io::fd_watcher::make(loop_, p.to_child, [weak](int, int) {
    if (auto self = weak.lock())
      self->on_writable();
  });
  if (p.out >= 0) {
    w_out_ = io::fd_watcher::make(loop_, p.out, [weak](int, int) {
      if (auto self = weak.lock())
        self->on_log_readable(self->proc_.out, self->w_out_, self->out_partial_,
                              log_source::python_stdout);
    });
    w_out_->start(UV_READABLE);
  }
  w_err_ = io::fd_watcher::make(loop_, p.err, [weak](int, int) {
    if (auto self = weak.lock())
      self->on_log_readable(self->proc_.err, self->w_err_, self->err_partial_,
                            log_source::python_stderr);
  });
  w_err_->start(UV_READABLE);
  // Keep the channel alive until the process is reaped: the exit watcher holds it strongly.
  w_exit_ = io::fd_watcher::make(loop_, p.pidfd, [self = shared_from_this()](int, int) {
    self->on_exit();
  });
  w_exit_->start(UV_READABLE);
  w_read_->start(UV_READABLE);
  std::lock_guard<std::mutex> g{mu_};
  to_child_ = p.to_child;
  if (!out_.empty())
    arm_writer_locked();
}

void channel::on_readable() {
  // A bounded number of reads per wake-up keeps the loop fair to other interpreters.
  for (int i = 0; i < 8 && proc_.from_child >= 0; ++i) {
    auto [p, n] = reader_.write_area();
    auto r = ::read(proc_.from_child, p, n);
    if (r > 0) {
      reader_.commit(static_cast<std::size_t>(r));
      bytes_in_.fetch_add(static_cast<std::uint64_t>(r), std::memory_order_relaxed);
      process_frames();
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
}

void channel::process_frames() {
  for (;;) {
    auto r = reader_.next();
    using st = protocol::frame_reader::status;
    if (r.st == st::need_more)
      return;
    if (r.st == st::too_large) {
      violation(errc::frame_too_large, "the runner sent a frame of " + std::to_string(r.declared) +
                                         " bytes, above max_frame_bytes (" +
                                         std::to_string(limits_.max_frame_bytes) + ")");
      return;
    }
    if (r.st == st::empty_frame) {
      violation(errc::protocol_error, "the runner sent an empty frame");
      return;
    }
    auto decoded = protocol::decode(r.body, limits_);
    if (auto err = std::get_if<std::string>(&decoded)) {
      violation(errc::protocol_error, "malformed frame from the runner: " + *err);
      return;
    }
    dispatch(std::move(std::get<protocol::message>(decoded)));
  }
}

void channel::dispatch(protocol::message m) {
  using protocol::kind;
  if (m.kind == kind::response) {
    completion cb;
    {
      std::lock_guard<std::mutex> g{mu_};
      auto i = pending_.find(m.id);
      if (i == pending_.end())
        return;  // a late reply to an abandoned request
      cb = std::move(i->second);
      pending_.erase(i);
    }
    cb(protocol::parse_response(m));
    return;
  }
  if (m.kind == kind::notification && m.op == "ready") {
    if (ready_seen_) {
      violation(errc::protocol_error, "second 'ready' notification");
      return;
    }
    ready_seen_ = true;
    ready_info info;
    info.python_version = protocol::map_string(m.payload, "python");
    info.executable = protocol::map_string(m.payload, "executable");
    info.codec = protocol::map_string(m.payload, "codec");
    if (auto v = protocol::map_get(m.payload, "pid"); v && v->type == msgpack::type::POSITIVE_INTEGER)
      info.python_pid = static_cast<int>(v->via.u64);
    if (auto v = protocol::map_get(m.payload, "protocol");
        v && v->type == msgpack::type::POSITIVE_INTEGER)
      info.protocol = static_cast<int>(v->via.u64);
    if (info.protocol != protocol::version) {
      violation(errc::protocol_error, "runner speaks protocol " + std::to_string(info.protocol) +
                                        ", host speaks " + std::to_string(protocol::version));
      return;
    }
    if (events_)
      events_(std::move(info));
    return;
  }
  // Requests from the runner (python -> host calls) come with a later protocol revision;
  // unknown notifications are ignored for forward compatibility.
  if (m.kind == kind::request)
    violation(errc::protocol_error, "unexpected request '" + m.op + "' from the runner");
}

void channel::violation(errc code, std::string what) {
  emit_line(log_source::runtime, what + "; killing the interpreter");
  set_exit_reason(make_error(code, what));
  // Stop reading: nothing after a violation can be trusted.
  if (w_read_)
    w_read_->stop();
  signal_group(SIGKILL);
}

void channel::on_log_readable(int& fd, std::shared_ptr<io::fd_watcher>& w, std::string& partial,
                              log_source src) {
  char buf[16384];
  for (int i = 0; i < 8 && fd >= 0; ++i) {
    auto r = ::read(fd, buf, sizeof buf);
    if (r > 0) {
      std::size_t start = 0;
      auto n = static_cast<std::size_t>(r);
      for (std::size_t j = 0; j < n; ++j) {
        if (buf[j] == '\n') {
          if (partial.empty()) {
            emit_line(src, std::string_view{buf + start, j - start});
          } else {
            partial.append(buf + start, j - start);
            emit_line(src, partial);
            partial.clear();
          }
          start = j + 1;
        }
      }
      partial.append(buf + start, n - start);
      if (partial.size() >= max_log_line) {
        emit_line(src, partial);
        partial.clear();
      }
      if (n < sizeof buf)
        break;
    } else if (r == 0) {
      if (!partial.empty()) {
        emit_line(src, partial);
        partial.clear();
      }
      if (w)
        w->stop();
      break;
    } else if (errno != EINTR) {
      break;
    }
  }
}

void channel::emit_line(log_source src, std::string_view line) {
  if (!sink_)
    return;
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  sink_(log_record{label_, pid_.load(), src, line});
}

error channel::exit_error(int status) const {
  std::string what;
  if (WIFSIGNALED(status))
    what = "Python process " + std::to_string(proc_.pid) + " was killed by signal " +
           std::to_string(WTERMSIG(status)) + " (" + signal_name(WTERMSIG(status)) + ")";
  else
    what = "Python process " + std::to_string(proc_.pid) + " exited with code " +
           std::to_string(WEXITSTATUS(status));
  return make_error(errc::interpreter_exited, what);
}

void channel::on_exit() {
  int status = 0;
  auto r = ::waitpid(proc_.pid, &status, WNOHANG);
  if (r == 0)
    return;  // spurious
  if (r < 0 && errno == EINTR)
    return;
  reaped_.store(true);
  // Whatever the group still holds (grandchildren) goes too: no orphans.
  ::kill(-proc_.pid, SIGKILL);
  // Replies written before the exit are still in the pipe: deliver them first.
  if (proc_.from_child >= 0 && w_read_ && w_read_->active()) {
    for (int i = 0; i < 1024 && proc_.from_child >= 0; ++i) {
      auto [p, n] = reader_.write_area();
      auto k = ::read(proc_.from_child, p, n);
      if (k <= 0)
        break;
      reader_.commit(static_cast<std::size_t>(k));
      process_frames();
    }
  }
  if (proc_.out >= 0)
    on_log_readable(proc_.out, w_out_, out_partial_, log_source::python_stdout);
  if (proc_.err >= 0)
    on_log_readable(proc_.err, w_err_, err_partial_, log_source::python_stderr);
  for (auto* w : {&w_read_, &w_write_, &w_out_, &w_err_, &w_exit_})
    if (*w)
      (*w)->close();

  exit_info info;
  if (WIFSIGNALED(status))
    info.signal = WTERMSIG(status);
  else
    info.code = WEXITSTATUS(status);
  std::deque<std::pair<std::uint64_t, completion>> all;
  {
    std::lock_guard<std::mutex> g{mu_};
    info.requested = stopping_;
    if (exit_reason_)
      info.reason = *exit_reason_;
    else if (stopping_)
      info.reason = make_error(errc::interpreter_down,
                               "interpreter '" + label_ + "' was stopped (" +
                                 exit_error(status).message + ")");
    else
      info.reason = exit_error(status);
    exit_reason_ = info.reason;
    closed_ = true;
    to_child_ = -1;
    out_.clear();
    all = take_all_locked();
    process::close_fds(proc_);
  }
  for (auto& [id, cb] : all)
    cb(info.reason);
  auto ev = events_;
  events_ = nullptr;  // breaks the channel <-> actor reference cycle
  if (ev)
    ev(std::move(info));
}

} // namespace pyvisor::interp
