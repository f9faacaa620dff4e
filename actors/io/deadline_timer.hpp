#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

#include <uv.h>

#include "io/io_loop.hpp"

namespace pyvisor::io {

/// One libuv timer that fires at the earliest time it was armed for. `arm_at` is cheap from any
/// thread: it wakes the I/O thread only when the new time is earlier than the armed one, so a
/// stream of requests with a 30 s deadline costs one wake-up per 30 s, not one per request.
/// After it fires it is unarmed; the owner re-arms it for its next deadline from `on_fire`.
class deadline_timer : public std::enable_shared_from_this<deadline_timer>, public io::loop_handle {
public:
  using clock = std::chrono::steady_clock;

  static std::shared_ptr<deadline_timer> make(io_loop& loop, std::function<void()> on_fire);

  /// Fires at `t` or later (or at an earlier time armed before). Any thread.
  void arm_at(clock::time_point t);

  /// Stops for good (the callback never runs again). Any thread; idempotent.
  void close();

private:
  deadline_timer(io_loop& loop, std::function<void()> f) : loop_(loop), on_fire_(std::move(f)) {}
  void restart();  // I/O thread
  void handle_closed() override;
  static void fired(uv_timer_t* h);

  io_loop& loop_;
  std::function<void()> on_fire_;  // I/O thread only
  std::mutex mu_;
  clock::time_point armed_ = clock::time_point::max();  // guarded by mu_
  bool closed_ = false;                                 // guarded by mu_
  uv_timer_t timer_{};
  bool started_ = false;  // I/O thread: uv handle initialized
  std::shared_ptr<deadline_timer> self_;  // keeps *this alive while the uv handle exists
};

} // namespace pyvisor::io
