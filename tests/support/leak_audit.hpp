#pragma once

// Every test that runs real processes ends with this audit (libuv's MAKE_VALGRIND_HAPPY, CAF's
// actor counts): no child of the test process is left (running or zombie), no process of the
// recorded interpreter process groups survives, and the test process has exactly the fds it
// had before.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace pyvisor::test {

struct proc_info {
  int pid = 0;
  int ppid = 0;
  int pgid = 0;
  char state = '?';
};

inline std::vector<proc_info> all_processes() {
  std::vector<proc_info> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr)
    return out;
  while (auto* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    std::ifstream f("/proc/" + std::string{e->d_name} + "/stat");
    std::string line;
    if (!std::getline(f, line))
      continue;
    auto rp = line.rfind(')');
    if (rp == std::string::npos)
      continue;
    std::istringstream rest(line.substr(rp + 2));
    proc_info p;
    p.pid = static_cast<int>(pid);
    rest >> p.state >> p.ppid >> p.pgid;
    out.push_back(p);
  }
  ::closedir(d);
  return out;
}

/// Children of this process, zombies included.
inline std::vector<proc_info> my_children() {
  std::vector<proc_info> out;
  for (auto& p : all_processes())
    if (p.ppid == ::getpid())
      out.push_back(p);
  return out;
}

/// Live (non-zombie) processes in process group `pgid`.
inline std::vector<proc_info> live_in_group(int pgid) {
  std::vector<proc_info> out;
  for (auto& p : all_processes())
    if (p.pgid == pgid && p.state != 'Z' && p.state != 'X')
      out.push_back(p);
  return out;
}

/// Whether `pid` is gone or a zombie that is not ours (reparented orphans stay zombies on
/// machines whose PID 1 does not reap).
inline bool process_gone(int pid) {
  for (auto& p : all_processes())
    if (p.pid == pid)
      return p.state == 'Z' && p.ppid != ::getpid();
  return true;
}

inline std::set<int> open_fds() {
  std::set<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr)
    return fds;
  int self = ::dirfd(d);
  while (auto* e = ::readdir(d)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (*end == '\0' && e->d_name[0] != '\0' && fd != self)
      fds.insert(static_cast<int>(fd));
  }
  ::closedir(d);
  return fds;
}

inline std::string describe_fds(const std::set<int>& fds) {
  std::string s;
  for (int fd : fds) {
    char buf[512] = {0};
    auto n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof buf - 1);
    s += std::to_string(fd) + "->" + (n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?") + " ";
  }
  return s;
}

/// The multiplier of every time bound in the tests: PYVISOR_TEST_TIMEOUT_SCALE (default 1; set
/// it for sanitizer builds and loaded machines). Bounds only ever grow with it.
inline double timeout_scale() {
  static const double s = [] {
    const char* e = std::getenv("PYVISOR_TEST_TIMEOUT_SCALE");
    double v = e != nullptr ? std::strtod(e, nullptr) : 1.0;
    return v >= 1.0 ? v : 1.0;
  }();
  return s;
}

/// `d` scaled by timeout_scale().
template <class Rep, class Period>
std::chrono::milliseconds scaled(std::chrono::duration<Rep, Period> d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d);
  return std::chrono::milliseconds{static_cast<std::int64_t>(static_cast<double>(ms.count()) * timeout_scale())};
}

/// Waits (bounded) for `pred`; returns whether it became true. For conditions that settle
/// asynchronously (a reaped process disappearing from /proc), never for timing assertions.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + scaled(bound);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

} // namespace pyvisor::test
