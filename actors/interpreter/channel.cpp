#include "interpreter/channel.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <limits>
#include <poll.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pyvisor::interp {

namespace {

constexpr std::size_t max_log_line = 64 * 1024;
// Python -> host messages being handled at once before the host stops reading the runner's
// output (the runner then blocks in its writes and its cast/send awaits drain).
constexpr std::int64_t host_high_water = 10000;
constexpr std::int64_t host_low_water = 5000;

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string{"SIG"} + abbrev : std::to_string(sig);
}

busy_limits effective(busy_limits b) {
  if (b.disabled) {
    constexpr auto inf = std::numeric_limits<std::size_t>::max();
    b.high_water = b.low_water = b.max_inflight = b.max_queued = inf;
  }
  if (b.low_water > b.high_water)
    b.low_water = b.high_water;
  if (b.max_inflight == 0)
    b.max_inflight = 1;
  return b;
}

} // namespace

channel::channel(io::io_loop& loop, core::limits lim, busy_limits busy, std::string label,
                 log_sink sink)
  : loop_(loop),
    limits_(lim),
    busy_(effective(busy)),
    label_(std::move(label)),
    sink_(std::move(sink)),
    reader_(lim.max_frame_bytes) {
}

channel::~channel() {
  // Normally everything was closed at exit; this covers a process that never attached.
  process::close_fds(proc_);
}

// ---- writing (any thread) -------------------------------------------------------------------

void channel::submit(std::uint64_t id, std::string frame, completion cb, bool priority) {
  std::unique_lock<std::mutex> lk{mu_};
  if (closed_ || (stopping_ && !priority)) {
    auto e = closed_ && exit_reason_ ? *exit_reason_
                                     : make_error(errc::interpreter_down,
                                                  "interpreter '" + label_ + "' is stopped");
    lk.unlock();
    cb(protocol::reply{std::move(e)});
    return;
  }
  if (frame.size() - 4 > limits_.max_frame_bytes) {
    lk.unlock();
    cb(protocol::reply{make_error(errc::frame_too_large,
                                  "request of " + std::to_string(frame.size() - 4) +
                                    " bytes exceeds max_frame_bytes (" +
                                    std::to_string(limits_.max_frame_bytes) + ")")});
    return;
  }
  if (priority) {
    pending_.emplace(id, pending_entry{std::move(cb), true});
    ++inflight_;
    write_locked(std::move(frame));
    return;
  }
  bool send_now = gate_open_ && !is_busy_ && queue_.empty() && inflight_ < busy_.max_inflight;
  if (!send_now && queued_requests_ >= busy_.max_queued) {
    ++overloaded_;
    auto e = make_error(errc::overloaded,
                        "interpreter '" + label_ + "' is overloaded: " +
                          std::to_string(inflight_) + " requests in flight, " +
                          std::to_string(queued_requests_) + " queued (max_queued " +
                          std::to_string(busy_.max_queued) + ")");
    lk.unlock();
    cb(protocol::reply{std::move(e)});
    return;
  }
  // Registered before the write: the reply may arrive before write() returns.
  pending_.emplace(id, pending_entry{std::move(cb), send_now});
  if (send_now) {
    ++inflight_;
    write_locked(std::move(frame));
  } else {
    queue_.push_back({id, std::move(frame)});
    ++queued_requests_;
  }
}

void channel::notify(std::string frame) {
  std::lock_guard<std::mutex> g{mu_};
  if (closed_ || stopping_)
    return;
  if (!gate_open_ || !queue_.empty()) {
    queue_.push_back({0, std::move(frame)});  // keeps its place behind queued requests
    return;
  }
  write_locked(std::move(frame));
}

void channel::respond(std::string frame) {
  std::lock_guard<std::mutex> g{mu_};
  if (closed_ || to_child_ < 0)
    return;
  write_locked(std::move(frame));
}

void channel::host_done() {
  host_handled_.fetch_add(1, std::memory_order_relaxed);
  auto left = host_outstanding_.fetch_sub(1) - 1;
  if (left == host_low_water) {
    loop_.post([weak = weak_from_this()] {
      auto self = weak.lock();
      if (self && self->read_paused_ && self->host_outstanding_.load() <= host_low_water) {
        self->read_paused_ = false;
        if (self->w_read_ && self->proc_.from_child >= 0)
          self->w_read_->start(UV_READABLE);
      }
    });
  }
}

void channel::write_locked(std::string frame) {
  if (out_.empty() && to_child_ >= 0) {
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
  if (!is_busy_ && out_bytes_ > busy_.high_water) {
    is_busy_ = true;
    ++busy_transitions_;
  }
}

void channel::pump_locked() {
  while (gate_open_ && !is_busy_ && !queue_.empty() && !closed_) {
    auto& q = queue_.front();
    if (q.id != 0) {
      if (inflight_ >= busy_.max_inflight)
        break;
      auto i = pending_.find(q.id);
      --queued_requests_;
      if (i == pending_.end()) {  // cannot happen: abandon removes its queue entry
        queue_.pop_front();
        continue;
      }
      i->second.sent = true;
      ++inflight_;
    }
    auto frame = std::move(q.frame);
    queue_.pop_front();
    write_locked(std::move(frame));
  }
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
  if (is_busy_ && out_bytes_ <= busy_.low_water) {
    is_busy_ = false;
    pump_locked();
  }
  if (out_.empty() && close_after_flush_ && to_child_ >= 0) {
    // EOF tells the runner to finish even if it missed the shutdown frame. The fd is closed on
    // the I/O thread after its watcher: closing it under a live uv_poll would let that poll's
    // later close remove a *reused* fd number (another interpreter's pidfd) from epoll.
    to_child_ = -1;
    loop_.post([self = shared_from_this()] { self->close_request_pipe(); });
  }
}

void channel::close_request_pipe() {
  if (proc_.to_child < 0)
    return;
  if (w_write_) {
    w_write_->close();
    w_write_.reset();
  }
  ::close(proc_.to_child);
  proc_.to_child = -1;
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

void channel::write_failed_locked(int err) {
  // The process may be alive (Python closed fd 3) or gone (its exit is not handled yet).
  // Either way nothing more can be written: stop writing, and let the I/O thread fail what
  // is pending at once and end the process (unless it already exited: then on_exit reports
  // the exit itself).
  out_.clear();
  out_bytes_ = 0;
  to_child_ = -1;  // the fd stays open (closed with the others at exit)
  if (write_failed_)
    return;
  write_failed_ = true;
  loop_.post([self = shared_from_this(), err] { self->on_write_failed(err); });
}

bool channel::python_exiting() const {
  // The reaped process (the guard) exited.
  if (proc_.pidfd >= 0) {
    pollfd p{proc_.pidfd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1)
      return true;
  }
  // Python closed its end of the reply pipe too (only it holds it): it is exiting, which is
  // what closed fd 3 (a write can fail before the exit is visible anywhere else).
  if (proc_.from_child >= 0) {
    pollfd p{proc_.from_child, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP))
      return true;
  }
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

void channel::on_write_failed(int err) {
  if (reaped_.load())
    return;
  if (python_exiting())
    return;  // on_exit answers every request with the exit status
  auto e = make_error(errc::protocol_error,
                      "cannot write to the Python process " + std::to_string(pid_.load()) +
                        ": " + std::strerror(err) +
                        (err == EPIPE ? " (it closed its request pipe, fd 3)" : "") +
                        "; killing the interpreter");
  emit_line(log_source::runtime, e.message);
  std::deque<std::pair<std::uint64_t, completion>> all;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (!exit_reason_)
      exit_reason_ = e;
    closed_ = true;  // new requests fail at once with the reason
    all = take_all_locked();
  }
  for (auto& [id, cb] : all)
    cb(protocol::reply{e});
  signal_group(SIGKILL);
}

void channel::forget_locked(std::unordered_map<std::uint64_t, pending_entry>::iterator i) {
  if (i->second.sent) {
    --inflight_;
  } else {
    for (auto q = queue_.begin(); q != queue_.end(); ++q) {
      if (q->id == i->first) {
        queue_.erase(q);
        --queued_requests_;
        break;
      }
    }
  }
  pending_.erase(i);
}

bool channel::abandon(std::uint64_t id) {
  std::lock_guard<std::mutex> g{mu_};
  auto i = pending_.find(id);
  if (i == pending_.end())
    return false;
  bool was_sent = i->second.sent;
  forget_locked(i);
  if (was_sent && !closed_ && to_child_ >= 0) {
    // Still running in the runner until it answers: it keeps counting against max_inflight,
    // so the host never sends more than the runner admits (a runner at its limit stops
    // reading, and a request stuck unread in the pipe could never be cancelled).
    unacknowledged_.insert(id);
    ++inflight_;
    write_locked(protocol::encode_cancel(id));
  }
  pump_locked();
  return true;
}

bool channel::is_pending(std::uint64_t id) const {
  std::lock_guard<std::mutex> g{mu_};
  return pending_.count(id) > 0;
}

bool channel::unacknowledged(std::uint64_t id) const {
  std::lock_guard<std::mutex> g{mu_};
  return unacknowledged_.count(id) > 0;
}

bool channel::interrupt(const std::vector<std::uint64_t>& ids) {
  std::lock_guard<std::mutex> g{mu_};
  if (closed_ || interrupt_fd_ < 0 || reaped_.load())
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
  auto pid = pid_.load();
  if (pid > 0)
    ::kill(pid, SIGINT);
  return true;
}

bool channel::request_stack_dump() {
  std::lock_guard<std::mutex> g{mu_};
  if (closed_ || dump_fd_ < 0 || reaped_.load())
    return false;
  auto pid = pid_.load();
  return pid > 0 && ::kill(pid, SIGUSR2) == 0;
}

bool channel::read_stack_dump(std::string& out) {
  constexpr std::size_t max_dump = 64 * 1024;
  std::lock_guard<std::mutex> g{mu_};
  bool got = false;
  char buf[4096];
  while (dump_fd_ >= 0 && out.size() < max_dump) {
    auto n = ::read(dump_fd_, buf, std::min(sizeof buf, max_dump - out.size()));
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      got = true;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  return got;
}

std::deque<std::pair<std::uint64_t, channel::completion>> channel::take_queued_locked() {
  // Queued requests are taken out; queued notifications (drop_env, ...) keep their place.
  std::deque<std::pair<std::uint64_t, completion>> out;
  std::deque<queued> keep;
  for (auto& q : queue_) {
    if (q.id == 0) {
      keep.push_back(std::move(q));
      continue;
    }
    auto i = pending_.find(q.id);
    if (i != pending_.end()) {
      out.emplace_back(q.id, std::move(i->second.cb));
      pending_.erase(i);
    }
  }
  queue_ = std::move(keep);
  queued_requests_ = 0;
  return out;
}

std::vector<std::uint64_t> channel::interrupt_all() {
  std::vector<std::uint64_t> in_flight;
  std::deque<std::pair<std::uint64_t, completion>> never_sent;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (closed_)
      return in_flight;
    never_sent = take_queued_locked();
    pump_locked();  // notifications that were queued behind them
    for (auto& [id, p] : pending_) {
      if (!p.sent)
        continue;
      in_flight.push_back(id);
      p.cancel_sent = true;
      if (to_child_ >= 0)
        write_locked(protocol::encode_cancel(id));
    }
  }
  auto e = make_error(errc::cancelled, "cancelled by interrupt() before it was sent");
  for (auto& [id, cb] : never_sent)
    cb(protocol::reply{e});
  if (!in_flight.empty())
    interrupt(in_flight);
  return in_flight;
}

void channel::open_gate() {
  std::lock_guard<std::mutex> g{mu_};
  if (gate_open_ || closed_)
    return;
  gate_open_ = true;
  pump_locked();
}

void channel::begin_stop() {
  std::deque<std::pair<std::uint64_t, completion>> failed;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (stopping_ || closed_)
      return;
    stopping_ = true;
    // Requests never sent fail now; requests in flight get their answer or fail at exit.
    failed = take_queued_locked();
    if (to_child_ >= 0) {
      write_locked(protocol::encode_shutdown());
      close_after_flush_ = true;
      if (out_.empty())
        flush_locked();
    }
  }
  auto e = make_error(errc::interpreter_down, "interpreter '" + label_ + "' is stopping");
  for (auto& [id, cb] : failed)
    cb(protocol::reply{e});
}

std::deque<std::pair<std::uint64_t, channel::completion>> channel::take_all_locked() {
  std::deque<std::pair<std::uint64_t, completion>> all;
  for (auto& [id, p] : pending_)
    all.emplace_back(id, std::move(p.cb));
  pending_.clear();
  queue_.clear();
  queued_requests_ = 0;
  inflight_ = 0;
  return all;
}

void channel::fail_all(const error& e) {
  std::deque<std::pair<std::uint64_t, completion>> all;
  {
    std::lock_guard<std::mutex> g{mu_};
    all = take_all_locked();
  }
  for (auto& [id, cb] : all)
    cb(protocol::reply{e});
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

interpreter_stats channel::stats() const {
  std::lock_guard<std::mutex> g{mu_};
  interpreter_stats s;
  s.queued_bytes = out_bytes_;
  s.in_flight = inflight_;
  s.admission_queue = queued_requests_;
  s.busy_transitions = busy_transitions_;
  s.requests_served = served_;
  s.overloaded = overloaded_;
  s.host_calls = host_handled_.load();
  s.bytes_in = bytes_in_.load();
  s.bytes_out = bytes_out_.load();
  return s;
}

// ---- I/O thread ------------------------------------------------------------------------------

void channel::attach(process::spawned_process p) {
  proc_ = p;
  pid_.store(p.python());
  {
    std::lock_guard<std::mutex> g{mu_};
    if (label_.empty())
      label_ = "python-" + std::to_string(p.python());
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
  interrupt_fd_ = p.interrupt;
  dump_fd_ = p.dump;
  if (!out_.empty())
    arm_writer_locked();
}

void channel::on_readable() {
  // A bounded number of reads per wake-up keeps the loop fair to other interpreters.
  for (int i = 0; i < 8 && proc_.from_child >= 0 && !read_paused_; ++i) {
    auto [p, n] = reader_.write_area();
    if (n == 0) {  // a complete large frame is waiting: take it first
      process_frames();
      continue;
    }
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
    auto decoded = protocol::decode(r.body, limits_, std::move(r.owner));
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
    bool stopping = false, host_cancelled = false;
    {
      std::lock_guard<std::mutex> g{mu_};
      auto i = pending_.find(m.id);
      if (i == pending_.end()) {
        if (unacknowledged_.erase(m.id) > 0) {  // a late reply to an abandoned request
          --inflight_;
          pump_locked();
        }
        return;
      }
      cb = std::move(i->second.cb);
      stopping = stopping_;
      host_cancelled = i->second.cancel_sent;
      forget_locked(i);
      ++served_;
      pump_locked();
    }
    auto rep = protocol::parse_response(m);
    if (!rep.result)
      vet_runner_error(rep, stopping && !host_cancelled);
    cb(std::move(rep));
    return;
  }
  if ((m.kind == kind::request && m.op == "host_call") ||
      (m.kind == kind::notification && (m.op == "host_cast" || m.op == "host_send"))) {
    dispatch_host(m);
    return;
  }
  if (m.kind == kind::notification && m.op == "log") {
    auto stream = protocol::map_string(m.payload, "stream");
    auto line = protocol::map_get(m.payload, "line");
    std::uint64_t id = 0;
    if (auto v = protocol::map_get(m.payload, "id"); v && v->type == msgpack::type::POSITIVE_INTEGER)
      id = v->via.u64;
    if (line != nullptr && line->type == msgpack::type::STR)
      emit_line(stream == "stderr" ? log_source::python_stderr : log_source::python_stdout,
                std::string_view{line->via.str.ptr, line->via.str.size}, id);
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
  // Unknown notifications are ignored for forward compatibility; unknown requests are
  // answered with an error so the runner's caller does not wait forever.
  if (m.kind == kind::request) {
    respond(protocol::encode_error_response(m.id, m.op, "not_exposed", "HostError",
                                            "the host does not serve '" + m.op + "'"));
  }
}

void channel::vet_runner_error(protocol::reply& rep, bool stop_cancelled) {
  auto& e = rep.result.error();
  switch (e.code) {
    // What the runner may answer with (python/pyvisor/_errors.py and _runner.py).
    case errc::python_exception:
    case errc::syntax_error:
    case errc::env_not_found:
    case errc::env_key_not_found:
    case errc::init_failed:
    case errc::unserializable:
    case errc::protocol_error:
    case errc::invalid_argument:
      return;
    case errc::cancelled:
      // The runner cancels what is still running when it shuts down; for the caller that is
      // a stop, not an interrupt (the host asked for no cancel of this request).
      if (stop_cancelled) {
        e = make_error(errc::interpreter_down,
                       "interpreter '" + label() + "' was stopped while the request ran");
      }
      return;
    default:
      e = make_error(errc::protocol_error,
                     "the runner answered with an error code it may not send ('" +
                       std::string{to_string(e.code)} + "'): " + e.message);
      return;
  }
}

void channel::dispatch_host(protocol::message& m) {
  host_message h;
  h.kind = m.op == "host_call" ? host_message::call
                               : (m.op == "host_cast" ? host_message::cast : host_message::send);
  h.rid = m.id;
  if (h.kind == host_message::send) {
    auto target = protocol::map_get(m.payload, "target");
    auto v = protocol::map_get(m.payload, "value");
    if (target && target->type == msgpack::type::STR)
      h.name.assign(target->via.str.ptr, target->via.str.size);
    else if (target)
      h.target = value{m.owner(), *target, m.zone.get()};
    h.args.push_back(v ? value{m.owner(), *v, m.zone.get()} : value{});
  } else {
    h.name = protocol::map_string(m.payload, "name");
    if (auto a = protocol::map_get(m.payload, "args"); a && a->type == msgpack::type::ARRAY)
      for (std::uint32_t i = 0; i < a->via.array.size; ++i)
        h.args.emplace_back(m.owner(), a->via.array.ptr[i], m.zone.get());
  }
  // Flow control: while too many host messages are being handled, stop reading the runner;
  // its writes then block and its cast/send/call awaits the drain (bounded memory both ways).
  if (host_outstanding_.fetch_add(1) + 1 >= host_high_water && !read_paused_) {
    read_paused_ = true;
    if (w_read_)
      w_read_->stop();
  }
  if (events_)
    events_(std::move(h));
  else
    host_done();
}

void channel::violation(errc code, std::string what) {
  violated_ = true;
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
      // An endless line is cut into pieces of exactly max_log_line bytes.
      std::size_t cut = 0;
      while (partial.size() - cut >= max_log_line) {
        emit_line(src, std::string_view{partial}.substr(cut, max_log_line));
        cut += max_log_line;
      }
      if (cut > 0)
        partial.erase(0, cut);
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

void channel::emit_line(log_source src, std::string_view line, std::uint64_t request_id) {
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  if (src == log_source::python_stderr && !ready_seen_) {
    // Until the runner is up, stderr is where a broken start explains itself.
    recent_stderr_.emplace_back(line.substr(0, 500));
    if (recent_stderr_.size() > 8)
      recent_stderr_.pop_front();
  }
  if (!sink_)
    return;
  // Lines the runner sends in log frames are not cut by the reader: cap every line here.
  while (line.size() > max_log_line) {
    sink_(log_record{label_, pid_.load(), src, line.substr(0, max_log_line), request_id});
    line.remove_prefix(max_log_line);
  }
  sink_(log_record{label_, pid_.load(), src, line, request_id});
}

error channel::exit_error(int status) const {
  std::string what;
  if (WIFSIGNALED(status))
    what = "Python process " + std::to_string(proc_.python()) + " was killed by signal " +
           std::to_string(WTERMSIG(status)) + " (" + signal_name(WTERMSIG(status)) + ")";
  else
    what = "Python process " + std::to_string(proc_.python()) + " exited with code " +
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
  // With the guard (spawn.hpp) the group and every descendant are gone already, and Python's
  // pid may be reused by now: nothing to signal. Without one, the group goes too: no orphans.
  if (proc_.python_pid <= 0 || proc_.python_pid == proc_.pid)
    ::kill(-proc_.python(), SIGKILL);
  // Replies written before the exit are still in the pipe: deliver them first.
  if (proc_.from_child >= 0 && !violated_) {
    read_paused_ = false;
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
    if (!ready_seen_ && !recent_stderr_.empty()) {
      info.reason.message += " before it was ready; its stderr ended with:";
      for (auto& l : recent_stderr_)
        info.reason.message += "\n  " + l;
    }
    exit_reason_ = info.reason;
    closed_ = true;
    to_child_ = -1;
    interrupt_fd_ = -1;
    dump_fd_ = -1;
    unacknowledged_.clear();
    out_.clear();
    out_bytes_ = 0;
    all = take_all_locked();
    process::close_fds(proc_);
  }
  for (auto& [id, cb] : all)
    cb(protocol::reply{info.reason});
  auto ev = events_;
  events_ = nullptr;  // breaks the channel <-> actor reference cycle
  if (ev)
    ev(std::move(info));
}

} // namespace pyvisor::interp
