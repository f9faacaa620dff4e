#include "pool/latency_histogram.hpp"

#include <bit>
#include <cmath>

namespace pyvisor::pooling {

int latency_histogram::bucket_of(std::uint64_t us) noexcept {
  if (us < 1)
    us = 1;
  // Octave o holds [2^o, 2^(o+1)); within it, sub-bucket s holds the s-th eighth of the octave.
  int o = static_cast<int>(std::bit_width(us)) - 1;
  if (o >= octaves)
    return buckets - 1;
  std::uint64_t base = std::uint64_t{1} << o;
  int s = o >= 3 ? static_cast<int>((us - base) >> (o - 3))
                 : static_cast<int>(((us - base) << 3) >> o);
  if (s >= sub_buckets)
    s = sub_buckets - 1;
  return o * sub_buckets + s;
}

std::uint64_t latency_histogram::upper_edge(int b) noexcept {
  int o = b / sub_buckets, s = b % sub_buckets;
  double base = std::ldexp(1.0, o);
  return static_cast<std::uint64_t>(std::ceil(base + base * (s + 1) / sub_buckets));
}

void latency_histogram::add(std::chrono::nanoseconds d) noexcept {
  auto us = static_cast<std::uint64_t>(d.count() <= 0 ? 0 : d.count() / 1000);
  counts_[static_cast<std::size_t>(bucket_of(us))].fetch_add(1, std::memory_order_relaxed);
  total_.fetch_add(1, std::memory_order_relaxed);
  auto m = max_us_.load(std::memory_order_relaxed);
  while (us > m && !max_us_.compare_exchange_weak(m, us, std::memory_order_relaxed)) {
  }
}

latency_summary latency_histogram::summary() const noexcept {
  std::array<std::uint64_t, buckets> c{};
  std::uint64_t n = 0;
  for (int b = 0; b < buckets; ++b) {
    c[static_cast<std::size_t>(b)] = counts_[static_cast<std::size_t>(b)].load(std::memory_order_relaxed);
    n += c[static_cast<std::size_t>(b)];
  }
  latency_summary s;
  s.count = n;
  s.max = std::chrono::microseconds{static_cast<std::int64_t>(max_us_.load(std::memory_order_relaxed))};
  if (n == 0)
    return s;
  auto at = [&](double q) {
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(n)));
    if (rank < 1)
      rank = 1;
    std::uint64_t seen = 0;
    for (int b = 0; b < buckets; ++b) {
      seen += c[static_cast<std::size_t>(b)];
      if (seen >= rank) {
        auto edge = upper_edge(b);
        auto mx = static_cast<std::uint64_t>(s.max.count());
        return std::chrono::microseconds{static_cast<std::int64_t>(edge < mx ? edge : mx)};
      }
    }
    return s.max;
  };
  s.p50 = at(0.50);
  s.p90 = at(0.90);
  s.p99 = at(0.99);
  return s;
}

} // namespace pyvisor::pooling
