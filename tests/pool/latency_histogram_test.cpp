// The pool layer (actors/pool) without processes: the latency histogram, a pure policy, as a
// plain object driven with chosen inputs: its buckets and the percentiles and max of its summary.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>

#include "pool/latency_histogram.hpp"

using namespace pyvisor;
using namespace std::chrono_literals;

namespace {
using hist = pooling::latency_histogram;
}

TEST(latency_histogram, buckets_are_monotone_and_upper_edges_within_13_percent) {
  EXPECT_EQ(hist::bucket_of(0), 0);
  EXPECT_EQ(hist::bucket_of(1), 0);
  int prev = 0;
  int checked = 0;
  auto check = [&](std::uint64_t us) {
    int b = hist::bucket_of(us);
    ASSERT_GE(b, 0);
    ASSERT_LT(b, hist::buckets);
    ASSERT_GE(b, prev) << us << " us";
    prev = b;
    auto edge = hist::upper_edge(b);
    ASSERT_GT(edge, us) << "the upper edge bounds every value of its bucket (" << us << " us)";
    if (us >= 8) {  // below 8 us the integer edges are coarser than 1/8
      ASSERT_LE(static_cast<double>(edge - us), 0.13 * static_cast<double>(us)) << us << " us";
    }
    ++checked;
  };
  for (std::uint64_t us = 1; us <= 100000; ++us)
    check(us);
  for (double x = 100001; x < std::ldexp(1.0, 30); x *= 1.001)
    check(static_cast<std::uint64_t>(x));
  check((std::uint64_t{1} << 30) - 1);
  EXPECT_GT(checked, 109000);
  for (int b = 1; b < hist::buckets; ++b)
    EXPECT_GE(hist::upper_edge(b), hist::upper_edge(b - 1)) << "bucket " << b;
  // Beyond ~18 min everything lands in the last bucket.
  EXPECT_EQ(hist::bucket_of(std::uint64_t{1} << 40), hist::buckets - 1);
}

namespace {

void expect_near_rel(std::chrono::microseconds got, double want, double rel, const char* what) {
  EXPECT_LE(std::abs(static_cast<double>(got.count()) - want), rel * want)
    << what << ": " << got.count() << " us, want ~" << want << " us";
}

} // namespace

TEST(latency_histogram, percentiles_of_a_uniform_distribution) {
  hist h;
  for (int us = 1; us <= 1000; ++us)
    h.add(std::chrono::microseconds{us});
  auto s = h.summary();
  EXPECT_EQ(s.count, 1000u);
  EXPECT_EQ(s.max, 1000us);
  expect_near_rel(s.p50, 500, 0.10, "p50");
  expect_near_rel(s.p90, 900, 0.10, "p90");
  expect_near_rel(s.p99, 990, 0.10, "p99");
  EXPECT_LE(s.p50, s.p90);
  EXPECT_LE(s.p90, s.p99);
  EXPECT_LE(s.p99, s.max);
}

TEST(latency_histogram, percentiles_of_a_bimodal_distribution_and_an_exact_max) {
  hist h;
  for (int i = 0; i < 950; ++i)
    h.add(200us);
  for (int i = 0; i < 49; ++i)
    h.add(50ms);
  h.add(std::chrono::microseconds{123457});  // the one slowest, not on any bucket edge
  auto s = h.summary();
  EXPECT_EQ(s.count, 1000u);
  expect_near_rel(s.p50, 200, 0.10, "p50");
  expect_near_rel(s.p90, 200, 0.10, "p90");
  expect_near_rel(s.p99, 50000, 0.10, "p99");
  EXPECT_EQ(s.max, std::chrono::microseconds{123457});
}

TEST(latency_histogram, percentiles_never_exceed_the_max) {
  hist h;
  h.add(std::chrono::microseconds{1001});  // its bucket's upper edge is 1024 us
  auto s = h.summary();
  EXPECT_EQ(s.max, std::chrono::microseconds{1001});
  EXPECT_EQ(s.p50, std::chrono::microseconds{1001});
  EXPECT_EQ(s.p99, std::chrono::microseconds{1001});
  hist tiny;
  tiny.add(-5ns);  // clock skew: counted, as 0
  tiny.add(500ns);
  auto t = tiny.summary();
  EXPECT_EQ(t.count, 2u);
  EXPECT_EQ(t.max, 0us);
  EXPECT_EQ(t.p99, 0us);
}

TEST(latency_histogram, an_empty_summary_is_all_zeros) {
  hist h;
  auto s = h.summary();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.p50, 0us);
  EXPECT_EQ(s.p90, 0us);
  EXPECT_EQ(s.p99, 0us);
  EXPECT_EQ(s.max, 0us);
}
