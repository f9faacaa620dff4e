// The pool layer (actors/pool) without processes: the autoscaler, a pure policy, as a plain
// object driven with chosen inputs and simulated steady_clock time points: when it scales up or
// down, by how much, and within which bounds.

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "pool/autoscaler.hpp"
#include "pool/pool_test_support.hpp"
#include "pyvisor/pool.hpp"

using namespace pyvisor;
using namespace pyvisor::test;
using namespace std::chrono_literals;

namespace {

using pooling::autoscaler;
using steady_tp = std::chrono::steady_clock::time_point;

steady_tp at(std::chrono::milliseconds t) {
  return steady_tp{t};
}

autoscale_policy scale_policy() {
  autoscale_policy p;
  p.inflight_per_worker = 1.0;
  p.up_window = 1s;
  p.idle_timeout = 10s;
  p.check_interval = 250ms;
  return p;
}

} // namespace

TEST(autoscaler, scales_up_only_after_a_whole_window_of_queueing_and_never_above_max) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load busy{2, 1, 1, 1};  // 2 queued, 1 in flight, 1 ready, 1 worker
  EXPECT_EQ(a.check(at(0ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(500ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(999ms), busy).delta, 0);
  auto d = a.check(at(1000ms), busy);
  EXPECT_EQ(d.delta, 1);
  EXPECT_TRUE(mentions(d.reason, "queued")) << d.reason;
  busy.workers = 2;
  EXPECT_EQ(a.check(at(1250ms), busy).delta, 0) << "the next step needs another whole window";
  EXPECT_EQ(a.check(at(1999ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(2000ms), busy).delta, 1);
  busy.workers = 3;  // at max
  for (auto t = 2000ms; t <= 20000ms; t += 250ms)
    EXPECT_EQ(a.check(at(t), busy).delta, 0) << t.count() << " ms";
}

TEST(autoscaler, in_flight_per_ready_worker_above_the_limit_is_pressure_too) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load at_limit{0, 2, 2, 2};  // 1.0 per worker: not above
  EXPECT_EQ(a.check(at(0ms), at_limit).delta, 0);
  EXPECT_EQ(a.check(at(5000ms), at_limit).delta, 0);
  autoscaler::load none_ready{0, 4, 0, 2};  // nothing ready: no ratio, and nothing queued
  EXPECT_EQ(a.check(at(6000ms), none_ready).delta, 0);
  EXPECT_EQ(a.check(at(9000ms), none_ready).delta, 0);
  autoscaler::load above{0, 3, 2, 2};  // 1.5 per worker
  EXPECT_EQ(a.check(at(10000ms), above).delta, 0);
  EXPECT_EQ(a.check(at(10999ms), above).delta, 0);
  auto d = a.check(at(11000ms), above);
  EXPECT_EQ(d.delta, 1);
  EXPECT_TRUE(mentions(d.reason, "in flight")) << d.reason;
}

TEST(autoscaler, interrupted_pressure_starts_the_window_over) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load busy{1, 1, 1, 1};
  autoscaler::load calm{0, 1, 1, 1};  // 1 in flight on 1 ready: not above 1.0, not idle
  EXPECT_EQ(a.check(at(0ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(600ms), calm).delta, 0);
  EXPECT_EQ(a.check(at(700ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(1000ms), busy).delta, 0) << "pressure since 700 ms only";
  EXPECT_EQ(a.check(at(1699ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(1700ms), busy).delta, 1);
}

TEST(autoscaler, scales_down_one_step_per_idle_timeout_and_never_below_min) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load idle{0, 0, 3, 3};
  EXPECT_EQ(a.check(at(0ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(9999ms), idle).delta, 0);
  auto d = a.check(at(10000ms), idle);
  EXPECT_EQ(d.delta, -1);
  EXPECT_TRUE(mentions(d.reason, "idle")) << d.reason;
  idle = {0, 0, 2, 2};
  EXPECT_EQ(a.check(at(10001ms), idle).delta, 0) << "one step per idle_timeout";
  EXPECT_EQ(a.check(at(19999ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(20000ms), idle).delta, -1);
  idle = {0, 0, 1, 1};  // at min
  for (auto t = 20000ms; t <= 100000ms; t += 2500ms)
    EXPECT_EQ(a.check(at(t), idle).delta, 0) << t.count() << " ms";
}

TEST(autoscaler, anything_in_flight_or_queued_interrupts_idleness) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load idle{0, 0, 3, 3};
  autoscaler::load one{0, 1, 3, 3};     // not pressure (1/3), not idle
  autoscaler::load queued{1, 0, 3, 3};  // pressure, not idle
  EXPECT_EQ(a.check(at(0ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(5000ms), one).delta, 0);
  EXPECT_EQ(a.check(at(6000ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(15999ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(15999ms), queued).delta, 0);
  EXPECT_EQ(a.check(at(16000ms), idle).delta, 0) << "idle only since 16 s";
  EXPECT_EQ(a.check(at(25999ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(26000ms), idle).delta, -1);
}

TEST(autoscaler, corrects_counts_outside_the_bounds_at_once) {
  autoscaler a{scale_policy(), 2, 4};
  auto below = a.check(at(0ms), autoscaler::load{0, 0, 1, 1});
  EXPECT_EQ(below.delta, 1);
  EXPECT_TRUE(mentions(below.reason, "below min_workers")) << below.reason;
  auto above = a.check(at(1ms), autoscaler::load{5, 9, 5, 5});  // even under pressure
  EXPECT_EQ(above.delta, -1);
  EXPECT_TRUE(mentions(above.reason, "above max_workers")) << above.reason;
}

TEST(autoscaler, enabled_only_when_max_exceeds_min) {
  autoscaler fixed{scale_policy(), 2, 2};
  EXPECT_FALSE(fixed.enabled());
  autoscaler a{scale_policy(), 1, 3};
  EXPECT_TRUE(a.enabled());
  EXPECT_EQ(a.min_workers(), 1u);
  EXPECT_EQ(a.max_workers(), 3u);
  a.set_bounds(3, 3);
  EXPECT_FALSE(a.enabled());
  a.set_bounds(2, 3);
  EXPECT_TRUE(a.enabled());
}
