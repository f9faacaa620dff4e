#pragma once

// A blocking call run under a bound: when it does not return in time the test process
// reports what every thread and descendant is doing and aborts (a hang cannot be recovered
// from inside the process, and a report is the only way to learn its cause in CI).

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/leak_audit.hpp"
#include "support/temp_files.hpp"

namespace pyvisor::test {

/// What a hang leaves to read: every descendant's state, kernel wait channel, kernel stack and
/// command line, then the user-space stacks of this process's threads and of its descendants
/// (gdb in batch mode, when installed; each attach bounded by `timeout`). Written to stderr.
inline void report_hang() {
  auto read_all = [](const std::string& path) {
    auto s = read_file(path);
    for (auto& c : s)
      if (c == '\0')
        c = ' ';  // cmdline's separators
    return s;
  };
  std::set<int> family{static_cast<int>(::getpid())};
  std::vector<proc_info> descendants;
  for (bool grew = true; grew;) {
    grew = false;
    for (auto& p : all_processes())
      if (family.count(p.ppid) != 0 && family.insert(p.pid).second) {
        descendants.push_back(p);
        grew = true;
      }
  }
  std::fprintf(stderr, "--- hang report: %zu descendants\n", descendants.size());
  for (auto& p : descendants) {
    auto base = "/proc/" + std::to_string(p.pid);
    std::fprintf(stderr, "pid %d ppid %d pgid %d state %c wchan %s\n  cmdline %s\n  kernel stack:\n%s",
                 p.pid, p.ppid, p.pgid, p.state, read_all(base + "/wchan").c_str(),
                 read_all(base + "/cmdline").c_str(), read_all(base + "/stack").c_str());
  }
  std::fflush(stderr);
  if (::access("/usr/bin/gdb", X_OK) != 0)
    return;
  auto stacks = [](int pid) {
    auto cmd = "timeout 120 /usr/bin/gdb -batch -nx -p " + std::to_string(pid) +
               " -ex 'thread apply all bt' </dev/null 1>&2 2>/dev/null";
    std::fprintf(stderr, "--- stacks of %d\n", pid);
    std::fflush(stderr);
    [[maybe_unused]] int rc = std::system(cmd.c_str());
  };
  stacks(static_cast<int>(::getpid()));
  for (auto& p : descendants)
    if (p.state != 'Z')
      stacks(p.pid);
}

/// Runs `f` (a blocking call without a deadline of its own, e.g. interpreter::stop()) on its
/// own thread and waits `bound` for it. A hang cannot be recovered from inside the process, so
/// it is reported on stderr with `report_hang()` and the test process aborts (ctest shows
/// both).
template <class F>
auto bounded(const char* what, std::chrono::milliseconds bound, F f) -> decltype(f()) {
  using result = decltype(f());
  auto task = std::make_shared<std::packaged_task<result()>>(std::move(f));
  auto fut = task->get_future();
  std::thread t([task] { (*task)(); });
  if (fut.wait_for(bound) != std::future_status::ready) {
    std::fprintf(stderr, "HANG: %s did not return within %lld ms\n", what, static_cast<long long>(bound.count()));
    std::fflush(stderr);
    report_hang();
    std::abort();
  }
  t.join();
  return fut.get();
}

} // namespace pyvisor::test
