// The pool layer (actors/pool) without processes: the pool actor under CAF's deterministic
// test_coordinator with simulated time (the fixture, pool_actor_test, is in pool_test_support.hpp).
// Its workers are stand-in actors that speak the child protocol (core/child_protocol.hpp): they
// start, come up, fail their start or crash when the test says so, and log what they were told.
//
// This file: the pool's size: resize adds and retires workers, recycling replaces a worker
// without dropping capacity, and autoscaling adds and removes workers within its bounds.
//
// No sleeps and no real timers: simulated time moves only through advance(), which steps the
// actor clock from one pending timeout to the next, and every loop is bounded. Tests whose
// comment says "Regression" pin bugs these tests found in the pool actor.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "pool/pool_test_support.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/pool.hpp"

using namespace pyvisor;
using namespace pyvisor::test;
using namespace std::chrono_literals;

TEST_F(pool_actor_test, resize_adds_workers_and_retires_the_extra_ones_for_good) {
  start(options(3));
  take_log();
  take_events();
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{5}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w4", "up w4", "start w5", "up w5"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"resized", "worker_started w4",
                                                     "worker_started w5"}));
  EXPECT_EQ(status().ready, 5u);
  EXPECT_EQ(w_->made.back(), (std::pair<std::uint32_t, std::uint32_t>{5, 5}));

  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{2}));
  // The least busy go; all are idle, so the newest first. Each is told to stop for good.
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w5", "gone w5", "exit w4", "gone w4",
                                                  "exit w3", "gone w3"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{5, 4, 3}));
  EXPECT_EQ(count_events(pool_event::worker_retired), 3);
  EXPECT_EQ(count_events(pool_event::worker_restarting), 0);
  EXPECT_EQ(status().ready, 2u);
  auto s = stats();
  EXPECT_EQ(s.workers, 2u);
  ASSERT_EQ(s.per_worker.size(), 2u);
  EXPECT_EQ(s.per_worker[0].id, "w1");
  EXPECT_EQ(s.per_worker[1].id, "w2");
  advance(5s);
  EXPECT_TRUE(take_log().empty()) << "retired workers are not restarted";

  auto zero = ask(pool_resize_atom::value, std::size_t{0});
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->code, errc::invalid_argument);
}

TEST_F(pool_actor_test, resize_removes_a_starting_worker_before_a_ready_one) {
  start(options(2));
  w_->hold = true;
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{3}));
  take_log();
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{2}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w3", "gone w3"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{3}));
  EXPECT_EQ(status().ready, 2u);
}

TEST_F(pool_actor_test, recycling_replaces_a_worker_without_dropping_capacity) {
  auto o = options(1);
  o.recycle.max_requests = 2;
  w_->hold = true;
  start(o);
  up(1);
  take_log();
  take_events();
  auto a1 = submit(*disp_);
  auto a2 = submit(*disp_);
  EXPECT_EQ(a1->worker, 1u);
  EXPECT_EQ(a2->worker, 1u);
  sched_.run();  // the dispatcher's recycling notice reaches the pool actor
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_recycling w1"}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w2"})) << "w1 stays until w2 is ready";
  EXPECT_EQ(w_->made.back(), (std::pair<std::uint32_t, std::uint32_t>{2, 1}))
    << "the replacement inherits w1's place on the ring";
  auto a3 = submit(*disp_);
  EXPECT_FALSE(a3->done) << "w1 takes no more, w2 is not ready: it waits";
  up(2);
  EXPECT_EQ(a3->worker, 2u);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"up w2", "exit w1", "gone w1"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{1}));
  auto s = stats();
  EXPECT_EQ(s.recycled, 1u);
  EXPECT_EQ(s.workers, 1u);
  EXPECT_EQ(s.ready, 1u);
}

TEST_F(pool_actor_test, autoscaling_adds_a_worker_after_the_up_window_and_removes_it_when_idle) {
  auto o = options(1);
  o.autoscale.min_workers = 1;
  o.autoscale.max_workers = 2;
  o.autoscale.up_window = 500ms;
  o.autoscale.idle_timeout = 1s;
  o.autoscale.check_interval = 100ms;
  start(o);  // t = 0; checks at 100 ms, 200 ms, ...
  EXPECT_EQ(status().ready, 1u);
  w_->hold = true;
  crash(1);  // its restart hangs: nothing takes requests
  auto q = submit(*disp_);
  EXPECT_FALSE(q->done);
  take_log();
  take_events();
  advance(599ms);  // queued since the check at 100 ms
  EXPECT_EQ(count_events(pool_event::scaled_up), 0);
  advance(1ms);  // t = 600 ms: a whole up_window
  ASSERT_EQ(count_events(pool_event::scaled_up), 1);
  EXPECT_TRUE(mentions(last_reason(pool_event::scaled_up), "queued"))
    << last_reason(pool_event::scaled_up);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w2"}));
  advance(2s);  // t = 2600 ms: still queued, but at max_workers
  EXPECT_EQ(count_events(pool_event::scaled_up), 1);
  EXPECT_EQ(w_->made.size(), 2u);
  up(2);
  EXPECT_EQ(q->worker, 2u);
  up(1);
  take_log();
  events_.clear();
  advance(1099ms);  // idle since the check at 2700 ms
  EXPECT_EQ(count_events(pool_event::scaled_down), 0);
  advance(1ms);  // t = 3700 ms
  ASSERT_EQ(count_events(pool_event::scaled_down), 1);
  EXPECT_TRUE(mentions(last_reason(pool_event::scaled_down), "idle"))
    << last_reason(pool_event::scaled_down);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w2", "gone w2"}));
  advance(5s);
  EXPECT_EQ(count_events(pool_event::scaled_down), 1) << "never below min_workers";
  EXPECT_EQ(status().ready, 1u);
}

// Regression, fixed (actors/pool/pool_actor.cpp: the pool_resize_atom handler, schedule_tick(), and the
// schedule_tick() call that ends on_tick()): the check timer re-arms itself only while the
// autoscaler is enabled. resize(n) sets the bounds to [n, max(n, max_workers)]; a
// resize to max_workers makes them [max, max] (disabled), the next check does not re-arm, and a
// later resize(n < max), which re-enables autoscaling within [n, max] as pool.hpp documents,
// never restarts the timer: the pool never scales again (the same for a pool whose autoscale
// bounds were equal from the start and are widened by resize). Expected: autoscaling resumes
// within the new bounds (e.g. the resize handler calls schedule_tick() when enabled() turned
// true, or the timer always runs).
TEST_F(pool_actor_test, autoscaling_resumes_after_a_resize_to_max_and_back) {
  auto o = options(1);
  o.autoscale.min_workers = 1;
  o.autoscale.max_workers = 3;
  o.autoscale.up_window = 500ms;
  o.autoscale.idle_timeout = 60s;
  o.autoscale.check_interval = 100ms;
  start(o);
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{3}));  // bounds [3, 3]
  advance(100ms);                                              // a check
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{1}));  // bounds [1, 3]
  EXPECT_EQ(status().ready, 1u);
  w_->hold = true;
  crash(1);  // nothing takes requests now
  auto q = submit(*disp_);
  EXPECT_FALSE(q->done);
  events_.clear();
  advance(2s);
  EXPECT_GE(count_events(pool_event::scaled_up), 1)
    << "queued for 2 s with 1 worker of at most 3, and no worker was added";
}
