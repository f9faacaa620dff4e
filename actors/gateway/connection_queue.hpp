#pragma once

// cpp-httplib's task queue for the gateway: one thread per open connection (httplib serves a
// keep-alive connection on one thread), at most `max_connections` of them. A connection beyond
// the cap is still read (so its socket is closed properly) on one of two overflow threads, whose
// requests the gateway answers 503 with "Connection: close" (refusing() tells).

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace pyvisor::gateway {

class connection_queue : public httplib::TaskQueue {
public:
  explicit connection_queue(std::size_t max_connections);
  ~connection_queue() override;

  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

  /// True on a thread that serves a connection beyond the cap.
  static bool refusing() noexcept;
  std::size_t open() const noexcept { return open_.load(std::memory_order_relaxed); }
  std::uint64_t refused() const noexcept { return refused_.load(std::memory_order_relaxed); }

private:
  void serve(bool overflow);

  std::size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::deque<std::function<void()>> overflow_jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;  // connection threads waiting for a job
  bool stop_ = false;
  std::atomic<std::size_t> open_{0};
  std::atomic<std::uint64_t> refused_{0};
};

} // namespace pyvisor::gateway
