#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "pyvisor/pool_options.hpp"

namespace pyvisor::pooling {

/// The autoscaling decision of a pool (autoscale_policy), as a pure function of what it is
/// shown at each check: no clock of its own, so tests drive it with simulated time points.
class autoscaler {
public:
  using duration = std::chrono::milliseconds;

  struct load {
    std::size_t queued = 0;     ///< requests in the pool queue
    std::size_t in_flight = 0;  ///< requests on workers
    std::size_t ready = 0;      ///< workers taking requests
    std::size_t workers = 0;    ///< workers counted against min/max (not the leaving ones)
  };

  struct decision {
    int delta = 0;  ///< +1 add a worker, -1 remove one, 0 nothing
    std::string reason;
  };

  autoscaler(autoscale_policy p, std::size_t min_workers, std::size_t max_workers)
    : p_(p), min_(min_workers), max_(max_workers) {}

  void set_bounds(std::size_t min_workers, std::size_t max_workers) {
    min_ = min_workers;
    max_ = max_workers;
  }
  std::size_t min_workers() const noexcept { return min_; }
  std::size_t max_workers() const noexcept { return max_; }

  /// Whether bounds allow any scaling at all.
  bool enabled() const noexcept { return max_ > min_; }

  template <class TimePoint>
  decision check(TimePoint now_tp, const load& l) {
    auto now = std::chrono::duration_cast<duration>(now_tp.time_since_epoch());
    decision d;
    const bool pressure =
      l.queued > 0 || (l.ready > 0 && static_cast<double>(l.in_flight) /
                                          static_cast<double>(l.ready) >
                                        p_.inflight_per_worker);
    const bool idle = l.queued == 0 && l.in_flight == 0;
    if (!pressure)
      pressure_since_.reset();
    else if (!pressure_since_)
      pressure_since_ = now;
    if (!idle)
      idle_since_.reset();
    else if (!idle_since_)
      idle_since_ = now;

    if (l.workers < min_) {
      d.delta = 1;
      d.reason = "below min_workers (" + std::to_string(min_) + ")";
    } else if (l.workers > max_) {
      d.delta = -1;
      d.reason = "above max_workers (" + std::to_string(max_) + ")";
    } else if (pressure && l.workers < max_ && now - *pressure_since_ >= p_.up_window) {
      d.delta = 1;
      d.reason = l.queued > 0 ? std::to_string(l.queued) + " requests queued for " +
                                  std::to_string(p_.up_window.count()) + " ms"
                              : "in flight per ready worker above " +
                                  std::to_string(p_.inflight_per_worker) + " for " +
                                  std::to_string(p_.up_window.count()) + " ms";
      pressure_since_ = now;  // the next step needs another full window
    } else if (idle && l.workers > min_ && now - *idle_since_ >= p_.idle_timeout) {
      d.delta = -1;
      d.reason = "idle for " + std::to_string(p_.idle_timeout.count()) + " ms";
      idle_since_ = now;
    }
    return d;
  }

private:
  autoscale_policy p_;
  std::size_t min_, max_;
  std::optional<duration> pressure_since_;
  std::optional<duration> idle_since_;
};

} // namespace pyvisor::pooling
