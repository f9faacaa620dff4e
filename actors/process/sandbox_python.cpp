#include "process/sandbox.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace pyvisor::process {

namespace {

/// Reads a small /proc file into buf (NUL-terminated); false when it cannot be read.
bool read_small(const char* path, char* buf, std::size_t size) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  std::size_t got = 0;
  for (;;) {
    auto n = ::read(fd, buf + got, size - 1 - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += static_cast<std::size_t>(n);
    if (got == size - 1)
      break;
  }
  ::close(fd);
  buf[got] = '\0';
  return true;
}

/// State and process group of `pid` from /proc/PID/stat; state '\0' when it is gone.
struct stat_line {
  char state = '\0';
  long pgrp = 0;
};

stat_line read_stat(pid_t pid) {
  char path[64], buf[1024];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  stat_line s;
  if (!read_small(path, buf, sizeof buf))
    return s;
  const char* rp = std::strrchr(buf, ')');
  char state = 0;
  long ppid = 0, pgrp = 0;
  if (rp == nullptr || std::sscanf(rp + 1, " %c %ld %ld", &state, &ppid, &pgrp) != 3)
    return s;
  s.state = state;
  s.pgrp = pgrp;
  return s;
}

/// The first child of single-threaded `pid`, or -1.
pid_t first_child(pid_t pid) {
  char path[96], buf[256];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", static_cast<int>(pid),
                static_cast<int>(pid));
  if (!read_small(path, buf, sizeof buf))
    return -1;
  long c = std::strtol(buf, nullptr, 10);
  return c > 0 ? static_cast<pid_t>(c) : -1;
}

} // namespace

pid_t find_sandboxed_python(pid_t bwrap_pid, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  long pause_ns = 100'000;  // 0.1 ms, doubling to 5 ms: bwrap takes a few ms to set up
  for (;;) {
    auto outer = read_stat(bwrap_pid);
    if (outer.state == '\0' || outer.state == 'Z' || outer.state == 'X')
      return -1;
    pid_t init = first_child(bwrap_pid);
    pid_t python = init > 0 ? first_child(init) : -1;
    if (python > 0) {
      auto s = read_stat(python);
      if (s.state != '\0' && s.state != 'Z' && s.pgrp == python)
        return python;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return -2;
    timespec ts{0, pause_ns};
    ::nanosleep(&ts, nullptr);
    pause_ns = std::min(pause_ns * 2, 5'000'000L);
  }
}

} // namespace pyvisor::process
