#include "gateway/connection_queue.hpp"

namespace pyvisor::gateway {

namespace {
thread_local bool refusing_connection = false;
constexpr std::size_t overflow_threads = 2;
} // namespace

connection_queue::connection_queue(std::size_t max_connections) : max_(max_connections) {
  std::lock_guard<std::mutex> g{mu_};
  for (std::size_t i = 0; i < overflow_threads; ++i)
    threads_.emplace_back([this] { serve(true); });
}

connection_queue::~connection_queue() {
  shutdown();
}

bool connection_queue::refusing() noexcept {
  return refusing_connection;
}

void connection_queue::enqueue(std::function<void()> fn) {
  std::lock_guard<std::mutex> g{mu_};
  if (stop_)
    return;
  // Connections being served or waiting for a thread.
  if (open_.load(std::memory_order_relaxed) + jobs_.size() >= max_) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    overflow_jobs_.push_back(std::move(fn));
    cv_.notify_all();
    return;
  }
  jobs_.push_back(std::move(fn));
  // Threads grow on demand up to the cap (plus the overflow threads); idle ones are reused.
  if (jobs_.size() > idle_ && threads_.size() < max_ + overflow_threads)
    threads_.emplace_back([this] { serve(false); });
  cv_.notify_all();
}

void connection_queue::serve(bool overflow) {
  refusing_connection = overflow;
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lk{mu_};
      auto& q = overflow ? overflow_jobs_ : jobs_;
      if (!overflow)
        ++idle_;
      cv_.wait(lk, [&] { return stop_ || !q.empty(); });
      if (!overflow)
        --idle_;
      if (q.empty())
        return;  // stopping and nothing left
      fn = std::move(q.front());
      q.pop_front();
      if (!overflow)
        open_.fetch_add(1, std::memory_order_relaxed);
    }
    fn();
    if (!overflow)
      open_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void connection_queue::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> g{mu_};
    stop_ = true;
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads)
    if (t.joinable())
      t.join();
}

} // namespace pyvisor::gateway
