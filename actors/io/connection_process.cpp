// io::connection: the process behind it: signals to its group, interrupts, stack dumps, and its
// exit (reap or status pipe), after which the replies still in the pipe are delivered.
#include "io/connection.hpp"
#include "io/connection_detail.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>

namespace pyvisor::io {

using namespace detail;

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

void connection::on_exit() {
  // The replies left in the pipe are read below: a thread reading its own reply hands the
  // pipe back first (its reply pipe hangs up now too), and take_back() watches the exit again.
  if (!claim_reader()) {
    w_exit_->stop();
    exit_parked_ = true;
    return;
  }
  take_back();
  int status = 0;
  if (proc_.status_pipe) {
    // A fork-server worker: its template killed the group and wrote the wait status.
    auto got = ::read(proc_.pidfd, &status, sizeof status);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
      release_reader();
      return;  // spurious: the watcher fires again
    }
    if (got != static_cast<ssize_t>(sizeof status))
      status = SIGKILL;  // the template died first: the worker died with it (PDEATHSIG)
  } else {
    siginfo_t info{};
    // The child stays a zombie (WNOWAIT): its pid, and so its process group id, cannot be
    // reused until the reap below.
    if (::waitid(p_pidfd, static_cast<id_t>(proc_.pidfd), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        info.si_pid == 0) {
      release_reader();
      return;  // spurious, or EINTR: the watcher fires again
    }
    // With the guard every descendant is gone already. Without one, the group goes too: no
    // orphans.
    if (proc_.python() == proc_.pid)
      ::kill(-proc_.pid, SIGKILL);
  }
  // Replies written before the exit are still in the pipe: deliver them first.
  if (proc_.from_child >= 0 && !stopped_reading_) {
    paused_ = false;
    for (int i = 0; i < 1024 && proc_.from_child >= 0 && !stopped_reading_; ++i) {
      auto [p, n] = frames_.write_area();
      if (n == 0) {
        read_frames();
        continue;
      }
      auto k = ::read(proc_.from_child, p, n);
      if (k <= 0)
        break;
      frames_.commit(static_cast<std::size_t>(k));
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
  reader_.store(reader_closed);  // nobody lends the pipe any more
  if (watch_fd_ >= 0) {
    ::close(watch_fd_);
    watch_fd_ = -1;
  }
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
