// The pool layer (actors/pool) without processes: the pool actor under CAF's deterministic
// test_coordinator with simulated time (the fixture, pool_actor_test, is in pool_test_support.hpp).
// Its workers are stand-in actors that speak the child protocol (core/child_protocol.hpp): they
// start, come up, fail their start or crash when the test says so, and log what they were told.
//
// This file: the workers' life in the pool: they start concurrently, a crashed one restarts at
// once and then after the backoff, a dead worker actor is replaced on its ring slot; stop and an
// exit message end the pool, interrupt cancels its queue; a request through the actor interface.
//
// No sleeps and no real timers: simulated time moves only through advance(), which steps the
// actor clock from one pending timeout to the next, and every loop is bounded.

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

TEST_F(pool_actor_test, workers_start_concurrently_and_the_status_counts_the_ready_ones) {
  w_->hold = true;
  start(options(3));
  // Every worker got child_start before any of them came up.
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w1", "start w2", "start w3"}));
  EXPECT_EQ(w_->made, (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{1, 1}, {2, 2}, {3, 3}}));
  EXPECT_EQ(status().ready, 0u);
  EXPECT_TRUE(take_events().empty());
  up(2);
  EXPECT_EQ(status().ready, 1u);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(describe(events_[0]), "worker_started w2");
  EXPECT_EQ(events_[0].pid, 100);
  EXPECT_FALSE(mentions(events_[0].reason, "restart")) << events_[0].reason;
  up(1);
  EXPECT_EQ(status().ready, 2u);
  up(3);
  EXPECT_EQ(status().ready, 3u);
  EXPECT_FALSE(status().breaker_open);
  EXPECT_FALSE(status().ended);
  auto s = stats();
  EXPECT_EQ(s.name, "test");
  EXPECT_EQ(s.workers, 3u);
  EXPECT_EQ(s.ready, 3u);
  ASSERT_EQ(s.per_worker.size(), 3u);
  for (auto& w : s.per_worker)
    EXPECT_EQ(w.state, worker_stats::ready) << w.id;
  EXPECT_EQ(starts(), 3u);
}

TEST_F(pool_actor_test, a_crashed_worker_restarts_at_once_then_after_the_backoff) {
  start(options(2));
  ASSERT_EQ(status().ready, 2u);
  take_log();
  take_events();
  crash(1);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end w1", "start w1", "up w1"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_exited w1", "worker_restarting w1 0ms",
                                                     "worker_started w1"}));
  ASSERT_GE(statuses_.size(), 2u);
  EXPECT_EQ(statuses_[statuses_.size() - 2].ready, 1u) << "one fewer while it restarted";
  EXPECT_EQ(status().ready, 2u);
  crash(1);  // again, before reset_after: the backoff sequence goes on
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end w1"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_exited w1", "worker_restarting w1 100ms"}));
  EXPECT_EQ(status().ready, 1u);
  auto mid = stats();
  ASSERT_EQ(mid.per_worker.size(), 2u);
  EXPECT_EQ(mid.per_worker[0].state, worker_stats::restarting);
  ASSERT_TRUE(mid.per_worker[0].last_exit);
  EXPECT_EQ(mid.per_worker[0].last_exit->kind, exit_kind::crash);
  advance(99ms);
  EXPECT_TRUE(take_log().empty());
  advance(1ms);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w1", "up w1"}));
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(describe(events_[0]), "worker_started w1");
  EXPECT_TRUE(mentions(events_[0].reason, "restart")) << events_[0].reason;
  EXPECT_EQ(status().ready, 2u);
  EXPECT_EQ(w_->starts[2], 1) << "the other worker was left alone";
  auto s = stats();
  EXPECT_EQ(s.restarts, 2u);
  EXPECT_EQ(s.per_worker[0].restarts, 2u);
  EXPECT_EQ(s.per_worker[1].restarts, 0u);
}

TEST_F(pool_actor_test, stop_answers_once_every_worker_actor_is_gone) {
  start(options(2));
  crash(1);  // restarted at once
  crash(1);  // now waits 100 ms: stop finds it between processes
  take_log();
  take_events();
  w_->linger = true;  // each actor takes its time to end, as a real one reaping its process
  auto h = self_->request(pool_, caf::infinite, stop_atom::value);
  sched_.run();
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w1", "exit w2"}));
  EXPECT_FALSE(has_reply()) << "both actors are still there";
  leave(1);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"gone w1"}));
  EXPECT_FALSE(has_reply()) << "w2 is still there";
  leave(2);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"gone w2"}));
  ASSERT_TRUE(has_reply());
  bool stopped = false;
  h.receive([&](bool b) { stopped = b; }, [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(status().ended);
  EXPECT_EQ(status().ready, 0u);
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(count_events(pool_event::worker_retired), 2);
  advance(1s);
  EXPECT_TRUE(take_log().empty()) << "w1's pending restart did nothing";
  // The pool actor is gone: a request fails.
  auto after = self_->request(pool_, caf::infinite, pool_resize_atom::value, std::size_t{3});
  sched_.run();
  bool failed = false;
  if (has_reply())
    after.receive([](bool) {}, [&](caf::error&) { failed = true; });
  EXPECT_TRUE(failed);
}

TEST_F(pool_actor_test, an_exit_message_stops_the_pool_like_stop) {
  start(options(2));
  take_log();
  caf::anon_send_exit(pool_, caf::exit_reason::user_shutdown);
  sched_.run();
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w1", "gone w1", "exit w2", "gone w2"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_TRUE(status().ended);
  auto late = submit(*disp_);
  ASSERT_TRUE(late->done);
  ASSERT_TRUE(late->err);
  EXPECT_EQ(late->err->code, errc::interpreter_down) << "the dispatcher refuses once stopping";
}

TEST_F(pool_actor_test, a_worker_actor_that_dies_is_replaced_on_its_ring_slot) {
  auto o = options(2);
  o.dispatch = dispatch_policy::key_affinity;
  start(o);
  std::vector<std::uint32_t> before;
  for (int i = 0; i < 200; ++i)
    before.push_back(submit(*disp_, key_of(i))->worker);
  ASSERT_TRUE(std::count(before.begin(), before.end(), 2u) > 0);
  take_log();
  take_events();
  caf::anon_send_exit(w_->actors.at(2), caf::exit_reason::kill);  // no child_down: just gone
  sched_.run();
  EXPECT_EQ(take_log(), (std::vector<std::string>{"gone w2", "start w3", "up w3"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_retired w2", "worker_started w3"}));
  EXPECT_EQ(w_->made.back(), (std::pair<std::uint32_t, std::uint32_t>{3, 2}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(status().ready, 2u);
  for (int i = 0; i < 200; ++i) {
    auto now = submit(*disp_, key_of(i))->worker;
    EXPECT_EQ(now, before[i] == 2 ? 3u : before[i]) << key_of(i) << ": w2's keys go to w3, only";
  }
}

TEST_F(pool_actor_test, interrupt_cancels_the_queue_and_interrupts_every_worker) {
  w_->hold = true;
  start(options(2));
  auto q1 = submit(*disp_);
  auto q2 = submit(*disp_);
  auto q3 = submit(*disp_);
  take_log();
  std::size_t n = 0;
  auto h = self_->request(pool_, caf::infinite, interrupt_atom::value);
  sched_.run();
  ASSERT_TRUE(has_reply());
  h.receive([&](std::size_t k) { n = k; }, [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
  EXPECT_EQ(n, 5u) << "3 cancelled in the pool queue, and 1 from each worker";
  EXPECT_EQ(take_log(), (std::vector<std::string>{"interrupt w1", "interrupt w2"}));
  for (auto& q : {q1, q2, q3}) {
    ASSERT_TRUE(q->done);
    ASSERT_TRUE(q->err);
    EXPECT_EQ(q->err->code, errc::cancelled);
  }
}

TEST_F(pool_actor_test, a_request_through_the_actor_interface_waits_for_a_worker) {
  w_->hold = true;
  start(options(1));
  eval_request req;
  req.code = "1 + 1";
  auto h = self_->request(pool_, caf::infinite, eval_atom::value, req);
  sched_.run();
  EXPECT_FALSE(has_reply()) << "no worker is ready: it waits in the pool queue";
  EXPECT_EQ(stats().queued, 1u);
  up(1);
  ASSERT_TRUE(has_reply());
  std::optional<error> err;
  h.receive([](const value&) { ADD_FAILURE() << "a test worker has no process"; },
            [&](caf::error& e) { err = to_error(e); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, errc::interpreter_down);
  EXPECT_TRUE(mentions(err->message, "'w1' has no process")) << err->message;
  EXPECT_EQ(stats().served, 1u);
}
