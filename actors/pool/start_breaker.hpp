#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

#include "pyvisor/error.hpp"
#include "pyvisor/pool_options.hpp"

namespace pyvisor::pooling {

/// The circuit breaker on a pool's worker starts (breaker_policy): closed -> open after
/// max_failures consecutive failed starts -> half open (one probe) after reset_timeout -> closed
/// when the probe comes up, or open again with the timeout doubled (capped). Pure state; the
/// pool actor runs the timer.
class start_breaker {
public:
  enum class state { closed, open, half_open };

  explicit start_breaker(breaker_policy p) : p_(p), timeout_(p.reset_timeout) {}

  state current() const noexcept { return s_; }
  const std::optional<error>& last_error() const noexcept { return last_; }
  std::size_t failures() const noexcept { return failures_; }

  /// A worker came up. Returns true when this closed the breaker.
  bool started() {
    failures_ = 0;
    timeout_ = p_.reset_timeout;
    if (s_ == state::closed)
      return false;
    s_ = state::closed;
    return true;
  }

  /// A start failed with `e`. Returns the delay after which a probe should run when this opened
  /// the breaker (from closed, or a failed probe), nullopt otherwise.
  std::optional<std::chrono::milliseconds> start_failed(const error& e) {
    last_ = e;
    ++failures_;
    if (s_ == state::half_open) {
      s_ = state::open;
      timeout_ = timeout_ * 2 > p_.max_reset_timeout ? p_.max_reset_timeout : timeout_ * 2;
      return timeout_;
    }
    if (s_ == state::closed && failures_ >= p_.max_failures) {
      s_ = state::open;
      return timeout_;
    }
    return std::nullopt;
  }

  /// The probe timer fired: half open (one start may run).
  void probe() {
    if (s_ == state::open)
      s_ = state::half_open;
  }

private:
  breaker_policy p_;
  state s_ = state::closed;
  std::size_t failures_ = 0;
  std::chrono::milliseconds timeout_;
  std::optional<error> last_;
};

} // namespace pyvisor::pooling
