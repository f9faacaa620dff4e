#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "pyvisor/pool_stats.hpp"

namespace pyvisor::pooling {

/// Request latencies in a log-scale histogram: 8 buckets per power of two of microseconds (each
/// bucket ~9 % wide), from 1 us to ~18 min. Lock-free: `add` is a few relaxed atomic increments
/// (the I/O thread calls it for every answer), `summary` reads a consistent-enough snapshot.
class latency_histogram {
public:
  void add(std::chrono::nanoseconds d) noexcept;

  /// Count, p50/p90/p99 (the upper edge of the bucket holding the rank) and max.
  latency_summary summary() const noexcept;

  static constexpr int sub_buckets = 8;
  static constexpr int octaves = 30;
  static constexpr int buckets = sub_buckets * octaves;

  /// The bucket of `us` microseconds, and the upper edge of bucket `b` (both exposed for tests).
  static int bucket_of(std::uint64_t us) noexcept;
  static std::uint64_t upper_edge(int b) noexcept;

private:
  std::array<std::atomic<std::uint64_t>, buckets> counts_{};
  std::atomic<std::uint64_t> total_{0};
  std::atomic<std::uint64_t> max_us_{0};
};

} // namespace pyvisor::pooling
