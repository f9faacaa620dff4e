#pragma once

// Helpers of the fault catalogue and the soak: host RSS and thread counts, a stopwatch, a
// result box for eval_async that counts its calls, and Python snippets that write raw frames
// to the runner's reply pipe (child fd 4).

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "pyvisor/expected.hpp"
#include "pyvisor/value.hpp"
#include "support/bounded_call.hpp"

namespace pyvisor::test {

/// A field of /proc/self/status in its unit (kB for Vm*), or -1.
inline long proc_status_field(const std::string& name) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, name.size() + 1, name + ":") == 0)
      return std::stol(line.substr(name.size() + 1));
  return -1;
}

/// Resident set size of this process in MiB.
inline double rss_mib() {
  return static_cast<double>(proc_status_field("VmRSS")) / 1024.0;
}

/// RSS after giving freed heap back to the OS (what is still live, not what malloc caches).
inline double trimmed_rss_mib() {
  ::malloc_trim(0);
  return rss_mib();
}

inline long thread_count() {
  return proc_status_field("Threads");
}

class stopwatch {
public:
  stopwatch() : t0_(std::chrono::steady_clock::now()) {}
  std::chrono::milliseconds elapsed() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0_);
  }
  void reset() { t0_ = std::chrono::steady_clock::now(); }

private:
  std::chrono::steady_clock::time_point t0_;
};

/// The result of one eval_async: the callback to pass, how often it ran, what it got.
class async_result {
public:
  async_result() : s_(std::make_shared<state>()) {}

  std::function<void(expected<value>)> callback() {
    return [s = s_](expected<value> r) {
      std::lock_guard<std::mutex> g{s->mu};
      ++s->calls;
      if (!s->result)
        s->result.emplace(std::move(r));
      s->cv.notify_all();
    };
  }

  /// Waits (bounded) for the first call.
  bool wait(std::chrono::milliseconds bound) {
    std::unique_lock<std::mutex> g{s_->mu};
    return s_->cv.wait_for(g, bound, [&] { return s_->calls > 0; });
  }

  int calls() const {
    std::lock_guard<std::mutex> g{s_->mu};
    return s_->calls;
  }

  /// The first result (call wait() first).
  expected<value> result() const {
    std::lock_guard<std::mutex> g{s_->mu};
    return *s_->result;
  }

private:
  struct state {
    mutable std::mutex mu;
    std::condition_variable cv;
    int calls = 0;
    std::optional<expected<value>> result;
  };
  std::shared_ptr<state> s_;
};

/// Python prelude: `frame(obj)` encodes one protocol frame with the runner's own pure codec,
/// `write4(data)` writes raw bytes to the reply pipe completely (blocking meanwhile).
inline const char* raw_frame_prelude =
  "import os\n"
  "import pyvisor._codec as _pv_codec\n"
  "_pv_pack = _pv_codec.PureCodec().packb\n"
  "def frame(obj):\n"
  "    body = _pv_pack(obj)\n"
  "    return len(body).to_bytes(4, 'big') + body\n"
  "def write4(data):\n"
  "    was = os.get_blocking(4)\n"
  "    os.set_blocking(4, True)\n"
  "    try:\n"
  "        view = memoryview(data)\n"
  "        while view:\n"
  "            view = view[os.write(4, view):]\n"
  "    finally:\n"
  "        os.set_blocking(4, was)\n";

} // namespace pyvisor::test
