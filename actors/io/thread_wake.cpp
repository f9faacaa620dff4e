#include "io/thread_wake.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pyvisor::io {

thread_wake::~thread_wake() {
  ::close(fd_);
}

void thread_wake::signal() noexcept {
  std::uint64_t one = 1;
  // EAGAIN only at a counter of 2^64 - 2: readable already.
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void thread_wake::drain() noexcept {
  std::uint64_t n = 0;
  while (::read(fd_, &n, sizeof n) < 0 && errno == EINTR) {
  }
}

struct thread_wakes::registry {
  std::mutex mu;
  std::unordered_map<std::thread::id, std::shared_ptr<thread_wake>> wakes;  // guarded by mu
};

namespace {

/// What one thread knows of its wakes (weakly: the registries own them). Its end drops them.
struct thread_cache {
  std::vector<std::pair<std::weak_ptr<thread_wakes::registry>, std::weak_ptr<thread_wake>>> seen;

  ~thread_cache() {
    auto me = std::this_thread::get_id();
    for (auto& [reg, wake] : seen)
      if (auto r = reg.lock()) {
        std::lock_guard<std::mutex> g{r->mu};
        r->wakes.erase(me);
      }
  }
};

thread_local thread_cache cache;

} // namespace

thread_wakes::thread_wakes() : reg_(std::make_shared<registry>()) {
}

thread_wakes::~thread_wakes() = default;

std::shared_ptr<thread_wake> thread_wakes::of_this_thread() {
  auto& seen = cache.seen;
  for (auto i = seen.begin(); i != seen.end();) {
    auto r = i->first.lock();
    if (!r) {  // a runtime that ended
      i = seen.erase(i);
      continue;
    }
    if (r == reg_) {
      if (auto w = i->second.lock())
        return w;
      seen.erase(i);
      break;
    }
    ++i;
  }
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0)
    return nullptr;  // out of fds: this call waits for the I/O thread
  auto w = std::make_shared<thread_wake>(fd);
  {
    std::lock_guard<std::mutex> g{reg_->mu};
    reg_->wakes[std::this_thread::get_id()] = w;
  }
  seen.emplace_back(reg_, w);
  return w;
}

} // namespace pyvisor::io
