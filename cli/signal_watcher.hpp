#pragma once

// Signals of the pyvisor program: SIGINT/SIGTERM/SIGHUP stop the running interpreter cleanly.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "pyvisor/interpreter.hpp"

namespace pyvisor::cli {

/// Turns SIGINT/SIGTERM/SIGHUP into a clean stop: the first one stops the interpreter (its
/// stop sequence ends the Python process, and the pending call fails), a second one kills the
/// interpreter's process group and exits at once.
///
/// The handlers only write the signal number to a pipe; a thread of ours does the rest. (No
/// signal blocking: a blocked mask would be inherited by the Python child, whereas caught
/// signals revert to their default action across exec.)
class signal_watcher {
public:
  signal_watcher() {
    if (pipe2(fds_, O_CLOEXEC) != 0) {
      throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    fcntl(fds_[1], F_SETFL, fcntl(fds_[1], F_GETFL) | O_NONBLOCK);
    write_fd_.store(fds_[1]);
    thread_ = std::thread([this] { run(); });
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (std::size_t k = 0; k < signals.size(); ++k) sigaction(signals[k], &sa, &old_[k]);
  }

  ~signal_watcher() { join(); }

  signal_watcher(const signal_watcher&) = delete;
  signal_watcher& operator=(const signal_watcher&) = delete;

  /// Makes `i` the interpreter a signal stops. Returns false when a signal already came.
  bool watch(const pyvisor::interpreter& i) {
    std::lock_guard lock(mutex_);
    target_ = i;
    return signal_.load() == 0;
  }

  /// The first signal received, 0 if none.
  int signal() const noexcept { return signal_.load(); }

  /// Restores the signal handlers and ends the thread (idempotent). Call before the runtime
  /// goes away.
  void join() {
    if (!thread_.joinable()) return;
    for (std::size_t k = 0; k < signals.size(); ++k) sigaction(signals[k], &old_[k], nullptr);
    const unsigned char wake = 0;
    while (write(fds_[1], &wake, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
    write_fd_.store(-1);
    close(fds_[0]);
    close(fds_[1]);
    std::lock_guard lock(mutex_);
    target_.reset();
  }

private:
  static constexpr std::array<int, 3> signals = {SIGINT, SIGTERM, SIGHUP};
  static inline std::atomic<int> write_fd_{-1};

  static void on_signal(int sig) {
    const int saved = errno;
    const unsigned char b = static_cast<unsigned char>(sig);
    const int fd = write_fd_.load();
    if (fd >= 0) (void)!write(fd, &b, 1);
    errno = saved;
  }

  void run() {
    for (;;) {
      unsigned char b = 0;
      const ssize_t n = read(fds_[0], &b, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || b == 0) return;  // woken by join()
      const int sig = b;
      int expected = 0;
      if (!signal_.compare_exchange_strong(expected, sig)) {
        // Second signal: do not wait for the stop sequence.
        if (std::optional<pyvisor::interpreter> t = current()) {
          const int pid = t->os_pid();
          if (pid > 0 && getpgid(pid) == pid) kill(-pid, SIGKILL);
        }
        _exit(128 + sig);
      }
      if (std::optional<pyvisor::interpreter> t = current()) (void)t->stop();
    }
  }

  std::optional<pyvisor::interpreter> current() {
    std::lock_guard lock(mutex_);
    return target_;
  }

  int fds_[2] = {-1, -1};
  std::array<struct sigaction, 3> old_{};
  std::thread thread_;
  std::atomic<int> signal_{0};
  std::mutex mutex_;
  std::optional<pyvisor::interpreter> target_;
};

inline const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

} // namespace pyvisor::cli
