#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <random>

#include "pyvisor/supervision.hpp"

namespace pyvisor::supervision {

using duration = std::chrono::milliseconds;

/// OTP's restart intensity: a sliding window of restart times. `add` records a restart at
/// `now` and says whether the supervisor may go on: false once more than `intensity` restarts
/// fall within the last `period` (then the supervisor gives up). Millisecond resolution on the
/// actor clock (OTP counts whole seconds).
class restart_window {
public:
  restart_window(int intensity, duration period) : intensity_(intensity), period_(period) {}

  template <class TimePoint>
  bool add(TimePoint now) {
    auto t = std::chrono::duration_cast<duration>(now.time_since_epoch());
    while (!times_.empty() && t - times_.front() >= period_)
      times_.pop_front();
    times_.push_back(t);
    return static_cast<int>(times_.size()) <= intensity_;
  }

  std::size_t size() const noexcept { return times_.size(); }

private:
  int intensity_;
  duration period_;
  std::deque<duration> times_;
};

/// The delay before each restart of one child (backoff_policy): 0 after a quiet spell, then
/// base, 2*base, 4*base ... up to cap, each scaled by a random factor in [1 - jitter, 1 + jitter]
/// (and never above cap). A child that stayed up for reset_after starts the sequence over.
class restart_backoff {
public:
  explicit restart_backoff(backoff_policy p) : p_(p) {}

  /// The child was up for `up` before it ended (0 when its start failed).
  void ended_after(duration up) {
    if (up >= p_.reset_after)
      failures_ = 0;
  }

  /// The delay before the next start; advances the sequence. `u` is uniform in [0, 1).
  duration next(double u) {
    auto n = failures_++;
    if (n == 0)
      return duration{0};
    double d = static_cast<double>(p_.base.count());
    for (std::uint32_t i = 1; i < n && d < static_cast<double>(p_.cap.count()); ++i)
      d *= 2;
    if (d > static_cast<double>(p_.cap.count()))
      d = static_cast<double>(p_.cap.count());
    d *= 1.0 + p_.jitter * (2.0 * u - 1.0);
    if (d > static_cast<double>(p_.cap.count()))
      d = static_cast<double>(p_.cap.count());
    return duration{static_cast<duration::rep>(d < 0 ? 0 : d)};
  }

  std::uint32_t failures() const noexcept { return failures_; }

private:
  backoff_policy p_;
  std::uint32_t failures_ = 0;
};

} // namespace pyvisor::supervision
